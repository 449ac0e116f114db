package node

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestFaceRecheck: with signal.face_check_interval set, welcome tells the
// page how to re-check during a call; the page's `face` messages (what it
// saw, never an image) are counted by reason, and bad ones are refused.
func TestFaceRecheck(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
		missing  string
		want     map[string]any // welcome.features.face_recheck; nil: absent
	}{
		{"leave", 5 * time.Second, "warn_then_leave", map[string]any{"interval_ms": 5000.0, "missing": "leave", "grace_ms": 7000.0}},
		{"warn", 3 * time.Second, "warn", map[string]any{"interval_ms": 3000.0, "missing": "warn", "grace_ms": 7000.0}},
		{"off", 0, "warn", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Signal.FaceCheck = true
			cfg.Signal.FaceCheckInterval = tc.interval
			cfg.Signal.FaceCheckMissing = tc.missing
			cfg.Signal.FaceCheckGrace = 7 * time.Second
			n := startNode(t, cfg)
			a := dial(t, n.ws, "a", nil)
			got, _ := a.welcome["features"].(map[string]any)["face_recheck"].(map[string]any)
			if (got == nil) != (tc.want == nil) || len(got) != len(tc.want) {
				t.Fatalf("face_recheck = %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Fatalf("face_recheck.%s = %v, want %v", k, got[k], v)
				}
			}
		})
	}

	cfg := testConfig(t)
	cfg.Signal.FaceCheck = true
	cfg.Signal.FaceCheckInterval = 5 * time.Second
	n := startNode(t, cfg)
	a, b := dial(t, n.ws, "a", nil), dial(t, n.ws, "b", nil)
	a.send(map[string]any{"type": "face", "room": "nope", "reason": "missing"})
	a.expectError("wrong_state", "face")
	a, b, room := pair(t, a, b, "video")
	for _, bad := range []map[string]any{
		{"type": "face", "room": room, "reason": "gone"},
		{"type": "face", "room": room},
	} {
		a.send(bad)
		a.expectError("bad_request", "face")
	}
	a.send(map[string]any{"type": "face", "room": "other", "reason": "missing"})
	a.expectError("not_in_room", "face")
	for _, r := range []string{"missing", "back", "missing", "left"} {
		a.send(map[string]any{"type": "face", "room": room, "reason": r})
	}
	a.send(map[string]any{"type": "leave"})
	a.expect("idle")
	if m := b.expect("peer_left"); m.str("reason") != "leave" {
		t.Fatalf("the stranger was told %v", m)
	}
	resp, err := http.Get(n.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`duet_face_rechecks_total{event="missing"} 2`, `duet_face_rechecks_total{event="back"} 1`,
		`duet_face_rechecks_total{event="left"} 1`, `duet_messages_total{type="face"} 8`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
