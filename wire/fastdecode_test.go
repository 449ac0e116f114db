package wire

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// slowDecode is what encoding/json makes of a frame.
func slowDecode(frame []byte) (*Inbound, error) {
	var m Inbound
	err := json.Unmarshal(frame, &m)
	return &m, err
}

// sameAsSlow fails t when the fast path took frame and answered other
// than encoding/json.
func sameAsSlow(t *testing.T, frame []byte) (taken bool) {
	t.Helper()
	fast, ok := fastDecode(frame)
	if !ok {
		return false
	}
	slow, err := slowDecode(frame)
	if err != nil {
		t.Fatalf("fast path took %q, encoding/json refuses it: %v", frame, err)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%q:\n fast %+v\n slow %+v", frame, *fast, *slow)
	}
	return true
}

func TestFastDecode(t *testing.T) {
	sdp := strings.Repeat(`a=line\r\n`, 40)
	tests := []struct {
		frame string
		taken bool // the fast path answers (else encoding/json does)
	}{
		{`{"type":"queue","mode":"video","interests":["music","art"],"lang":"en"}`, true},
		{` { "type" : "queue" , "interests" : [ ] } `, true},
		{`{"type":"offer","room":"Br7eBJ6m","sdp":"v=0\r\n` + sdp + `"}`, true},
		{`{"type":"answer","room":"r","sdp":"q\"\\\/\b\f\n\r\t","leg":"sfu"}`, true},
		{`{"type":"candidate","room":"r","candidate":{"candidate":"candidate:1 1 udp 2122260223 192.0.2.1 50000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":null}}`, true},
		{`{"type":"candidate","room":"r","candidate":{"a":[1,-2.5e+3,0.1,true,false,null,{"b":[]},"x"]}}`, true},
		{`{"type":"chat","room":"r","text":"héllo 👋 \u2028"}`, false}, // \u escape: the slow way
		{"{\"type\":\"chat\",\"room\":\"r\",\"text\":\"h\u00e9llo \U0001f44b\"}", true},
		{`{"type":"typing","room":"r","on":true}`, true},
		{`{"type":"queue","mode":"video","face":false}`, true},
		{`{"type":"report","room":"r","reason":"spam"}`, true},
		{`{}`, true},
		{`{"type":"leave"}`, true},
		{`{"Type":"leave"}`, false},               // case-folded key
		{`{"type":"leave","extra":1}`, false},     // unknown key
		{`{"type":"a","type":"b"}`, false},        // duplicate
		{`{"type":null}`, false},                  // null
		{`{"type":5}`, false},                     // wrong type
		{`{"room":5}`, false},                     // wrong type
		{`{"on":"yes"}`, false},                   // wrong type
		{`{"interests":"a"}`, false},              // wrong type
		{`{"interests":["a",1]}`, false},          // wrong element
		{`{"candidate":"c"}`, false},              // not an object
		{`{"candidate":{"a":01}}`, false},         // bad number
		{`{"candidate":{"a":1.}}`, false},         // bad number
		{`{"candidate":{"a":tru}}`, false},        // bad literal
		{`{"candidate":{"a":1,}}`, false},         // trailing comma
		{`{"type":"leave",}`, false},              // trailing comma
		{`{"type":"leave"} x`, false},             // trailing garbage
		{`{"type":"leave"`, false},                // truncated
		{`{"type":"le` + "\x01" + `ave"}`, false}, // control character
		{`[]`, false},
		{``, false},
		{`{"candidate":` + strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40) + `}`, false}, // deep: the slow way
	}
	for _, tt := range tests {
		if got := sameAsSlow(t, []byte(tt.frame)); got != tt.taken {
			t.Errorf("fast path took %q: %v, want %v", tt.frame, got, tt.taken)
		}
	}
}

// sameCandidateAsSlow fails t when fastCandidate took raw and answered
// other than ParseCandidate's encoding/json path.
func sameCandidateAsSlow(t *testing.T, raw []byte) (taken bool) {
	t.Helper()
	fast, ok := fastCandidate(raw)
	if !ok {
		return false
	}
	var probe struct {
		Candidate *string `json:"candidate"`
	}
	var slow ICECandidate
	if err := json.Unmarshal(raw, &probe); err != nil || probe.Candidate == nil {
		t.Fatalf("fast path took candidate %s, the slow path refuses it (%v)", raw, err)
	}
	if err := json.Unmarshal(raw, &slow); err != nil {
		t.Fatalf("fast path took candidate %s, encoding/json refuses it: %v", raw, err)
	}
	if !reflect.DeepEqual(fast, &slow) {
		t.Fatalf("%s:\n fast %+v\n slow %+v", raw, *fast, slow)
	}
	return true
}

func TestFastCandidate(t *testing.T) {
	tests := []struct {
		raw   string
		taken bool
	}{
		{`{"candidate":"candidate:1 1 udp 2122260223 192.0.2.1 50000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"r2Zb"}`, true},
		{`{"candidate":"c","sdpMid":null,"sdpMLineIndex":null,"usernameFragment":null}`, true},
		{`{ "candidate" : "" }`, true},
		{`{"candidate":"c","sdpMLineIndex":65535}`, true},
		{`{"candidate":"c","sdpMLineIndex":65536}`, false},
		{`{"candidate":"c","sdpMLineIndex":-1}`, false},
		{`{"candidate":"c","sdpMLineIndex":1.0}`, false},
		{`{"candidate":"c","sdpMLineIndex":1e2}`, false},
		{`{"candidate":"c","sdpMLineIndex":01}`, false},
		{`{"candidate":"c","sdpMLineIndex":"0"}`, false},
		{`{"candidate":"c","extra":1}`, false},
		{`{"candidate":"c","candidate":"d"}`, false},
		{`{"Candidate":"c"}`, false},
		{`{"sdpMid":"0"}`, false},
		{`{"candidate":null}`, false},
		{`{"candidate":"c"} `, false},
	}
	for _, tt := range tests {
		if got := sameCandidateAsSlow(t, []byte(tt.raw)); got != tt.taken {
			t.Errorf("fast path took %s: %v, want %v", tt.raw, got, tt.taken)
		}
	}
}
