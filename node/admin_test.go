package node

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/duetchat/duet/internal/testtool"
)

func adminGet(t *testing.T, url, token string) (int, map[string]any) {
	t.Helper()
	resp := authGet(t, url, token)
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// authGet is a GET with the admin bearer token ("" sends none).
func authGet(t *testing.T, url, token string) *http.Response {
	t.Helper()
	return testtool.AdminRequest(t, "GET", url, token, nil)
}

func TestAdminRooms(t *testing.T) {
	cfg := testConfig(t)
	cfg.Admin.Token = "op-secret"
	n := startNode(t, cfg)
	_, _, room := pair(t, dial(t, n.ws, "a", nil), dial(t, n.ws, "b", nil), "video")

	for _, tt := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"wrong token", "op-secreT", http.StatusUnauthorized},
		{"right token", "op-secret", http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if code, _ := adminGet(t, n.url+"/api/rooms", tt.token); code != tt.want {
				t.Fatalf("/api/rooms = %d, want %d", code, tt.want)
			}
			if code, _ := adminGet(t, n.url+"/api/rooms/"+room, tt.token); code != tt.want {
				t.Fatalf("/api/rooms/{room} = %d, want %d", code, tt.want)
			}
		})
	}

	_, list := adminGet(t, n.url+"/api/rooms", "op-secret")
	rooms, _ := list["rooms"].([]any)
	if len(rooms) != 1 {
		t.Fatalf("rooms = %v", list)
	}
	r := rooms[0].(map[string]any)
	if r["room"] != room || r["mode"] != "video" || r["path"] != "p2p" {
		t.Fatalf("room = %v", r)
	}
	if ms, _ := r["started_at"].(float64); ms <= 0 {
		t.Fatalf("started_at = %v", r["started_at"])
	}
	for _, dir := range []string{"a_to_b", "b_to_a"} {
		d, ok := r[dir].(map[string]any)
		if !ok {
			t.Fatalf("%s missing: %v", dir, r)
		}
		for _, k := range []string{"bytes", "packets", "bitrate_bps", "loss", "rtt_ms", "nacks", "plis"} {
			if _, ok := d[k].(float64); !ok {
				t.Errorf("%s.%s missing or not a number: %v", dir, k, d)
			}
		}
	}
	if code, one := adminGet(t, n.url+"/api/rooms/"+room, "op-secret"); code != 200 || one["room"] != room {
		t.Fatalf("one room = %d %v", code, one)
	}
	if code, _ := adminGet(t, n.url+"/api/rooms/nope", "op-secret"); code != http.StatusNotFound {
		t.Fatalf("unknown room = %d, want 404", code)
	}
}

func TestAdminClosedWithoutToken(t *testing.T) {
	n := startNode(t, testConfig(t)) // admin.token empty
	for _, tok := range []string{"", "anything"} {
		if code, body := adminGet(t, n.url+"/api/rooms", tok); code != http.StatusUnauthorized || body["error"] == nil {
			t.Fatalf("token %q: %d %v", tok, code, body)
		}
	}
}
