package wire

import (
	"strings"
	"testing"
)

func TestShieldEvent(t *testing.T) {
	for _, tc := range []struct {
		event string
		want  string // "" accepted; else in the error
	}{
		{ShieldBlurred, ""},
		{ShieldUnblurred, ""},
		{ShieldDetected, ""},
		{ShieldRevealed, ""},
		{ShieldSkipped, ""},
		{ShieldUnavailable, ""},
		{ShieldReported, `unknown event "reported"`}, // the node's own
		{"", `needs an "event"`},
		{"Detected", `unknown event "Detected"`},
		{strings.Repeat("x", 500), "unknown event"},
	} {
		e := ShieldEvent(tc.event)
		switch {
		case tc.want == "" && e != nil:
			t.Errorf("%q refused: %v", tc.event, e)
		case tc.want != "" && (e == nil || e.Code != CodeBadRequest || !strings.Contains(e.Msg, tc.want)):
			t.Errorf("%q: got %v, want bad_request with %q", tc.event, e, tc.want)
		case e != nil && len(e.Msg) > 200:
			t.Errorf("%q: error echoes too much: %d bytes", tc.event[:10], len(e.Msg))
		}
	}
	seen := map[string]bool{}
	for _, e := range ShieldEvents() {
		if seen[e] {
			t.Errorf("label %q twice", e)
		}
		seen[e] = true
	}
	if len(seen) != 7 {
		t.Errorf("%d labels, want 7 (a bounded set)", len(seen))
	}
}

// TestDecodeShield: both decoders read shield.event.
func TestDecodeShield(t *testing.T) {
	for _, frame := range []string{
		`{"type":"shield","room":"r","event":"detected"}`,
		`{"event":"detected","type":"shield","room":"r","extra":{"x":1}}`, // the slow path
	} {
		m, e := Decode([]byte(frame))
		if e != nil || m.Type != TypeShield || m.Event != ShieldDetected || m.Room == nil || *m.Room != "r" {
			t.Errorf("%s: %+v %v", frame, m, e)
		}
	}
	if _, e := Decode([]byte(`{"type":"shield","event":1}`)); e == nil || e.Code != CodeBadRequest {
		t.Errorf("a numeric event: %v", e)
	}
}
