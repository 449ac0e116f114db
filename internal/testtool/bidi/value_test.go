package bidi

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"
)

func TestRemoteValueGoValue(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     any
		bad      bool
	}{
		{"undefined", `{"type":"undefined"}`, nil, false},
		{"null", `{"type":"null"}`, nil, false},
		{"string", `{"type":"string","value":"Connected"}`, "Connected", false},
		{"emoji", `{"type":"string","value":"hi 👋"}`, "hi 👋", false},
		{"bool", `{"type":"boolean","value":true}`, true, false},
		{"number", `{"type":"number","value":42.5}`, 42.5, false},
		{"infinity", `{"type":"number","value":"Infinity"}`, math.Inf(1), false},
		{"bigint", `{"type":"bigint","value":"12345678901234567890"}`, "12345678901234567890", false},
		{"array", `{"type":"array","value":[{"type":"number","value":1},{"type":"string","value":"a"}]}`, []any{1.0, "a"}, false},
		{"object", `{"type":"object","value":[["path",{"type":"string","value":"p2p"}],["n",{"type":"number","value":3}]]}`,
			map[string]any{"path": "p2p", "n": 3.0}, false},
		{"nested", `{"type":"object","value":[["a",{"type":"array","value":[{"type":"null"}]}]]}`, map[string]any{"a": []any{nil}}, false},
		{"map with a number key", `{"type":"map","value":[[{"type":"number","value":1},{"type":"boolean","value":false}]]}`, map[string]any{"1": false}, false},
		{"node", `{"type":"node","sharedId":"f.1.d.2.e.3"}`, Node{SharedID: "f.1.d.2.e.3"}, false},
		{"function", `{"type":"function","handle":"h"}`, "function", false},
		{"no type", `{}`, nil, true},
		{"bad number", `{"type":"number","value":"lots"}`, nil, true},
		{"string that is not", `{"type":"string","value":7}`, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rv remoteValue
			if err := json.Unmarshal([]byte(tc.in), &rv); err != nil {
				t.Fatal(err)
			}
			got, err := rv.goValue()
			if tc.bad {
				if err == nil {
					t.Fatalf("got %#v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestNegativeZero(t *testing.T) {
	got, err := remoteValue{Type: "number", Value: json.RawMessage(`"-0"`)}.goValue()
	if f, ok := got.(float64); err != nil || !ok || f != 0 || !math.Signbit(f) {
		t.Fatalf("got %#v, %v", got, err)
	}
}

func TestPrefValue(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want string
		bad  bool
	}{
		{true, "true", false},
		{0, "0", false},
		{`data:,"x"`, `"data:,\"x\""`, false},
		{1.5, "", true},
	} {
		got, err := prefValue(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("prefValue(%#v) = %q, %v", tc.in, got, err)
		}
	}
}
