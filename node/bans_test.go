package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/internal/testtool"
	"github.com/duetchat/duet/wire"
)

// from dials as a client at ip, through a trusted proxy (the test itself).
func from(t *testing.T, ws, name, ip string) *client {
	return dial(t, ws, name, http.Header{"X-Forwarded-For": {ip}})
}

func adminDo(t *testing.T, method, url, token string, body any) (int, map[string]any) {
	t.Helper()
	resp := testtool.AdminRequest(t, method, url, token, body)
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func banConfig(cfg *configs.Config) {
	cfg.Moderation.ReportsToBan = 2
	cfg.HTTP.TrustedProxies = []string{"127.0.0.1"}
	cfg.Admin.Token = "op"
}

// expectBanned reads an `error` `banned` whose end is about d from now.
func expectBanned(t *testing.T, c *client, ref string, d time.Duration) {
	t.Helper()
	m := c.expectError("banned", ref)
	until, _ := m["until"].(float64)
	want := time.Now().Add(d).UnixMilli()
	if diff := int64(until) - want; diff < -60_000 || diff > 60_000 {
		t.Fatalf("%s: banned until %v, want about %v", c.name, until, want)
	}
}

// TestBans: two strangers report one session; it and its address are
// banned at queue and at connect, on every node; the operator lists,
// lifts and adds bans. On Redis the reported session lives on one node
// and the reporters on another.
func TestBans(t *testing.T) {
	setups := map[string]func(t *testing.T) (badNode, reporterNode *testNode){
		"memory": func(t *testing.T) (*testNode, *testNode) {
			cfg := testConfig(t)
			banConfig(cfg)
			n := startNode(t, cfg)
			return n, n
		},
		"redis two nodes": func(t *testing.T) (*testNode, *testNode) {
			nodes := startNodesWith(t, testtool.StartRedis(t), banConfig, "n1", "n2")
			return nodes[0], nodes[1]
		},
	}
	for name, setup := range setups {
		t.Run(name, func(t *testing.T) {
			badNode, repNode := setup(t)
			bad := from(t, badNode.ws, "bad", "203.0.113.9")
			for i := range 2 {
				r := from(t, repNode.ws, fmt.Sprint("reporter", i), fmt.Sprintf("198.51.100.%d", i+1))
				_, _, room := pair(t, bad, r, "text")
				r.send(wire.Request{Type: wire.TypeReport, Room: room, Reason: "spam"})
				if m := bad.expect("peer_left"); m.str("reason") != "reported" {
					t.Fatalf("peer_left = %v", m)
				}
				r.expect("queued") // the reporter is queued again...
				r.send(wire.Request{Type: wire.TypeLeave})
				r.expect("idle") // ...and steps out for the next round
			}
			// The second distinct reporter completes the ban.
			expectBanned(t, bad, "", 24*time.Hour)
			bad.expect("idle")
			for _, typ := range []string{"queue", "next"} {
				bad.send(map[string]any{"type": typ, "mode": "text"})
				expectBanned(t, bad, typ, 24*time.Hour)
			}
			// A new socket from the banned address, on either node.
			for _, n := range []*testNode{badNode, repNode} {
				again := from(t, n.ws, "bad again", "203.0.113.9")
				expectBanned(t, again, "", 24*time.Hour)
				if code := again.closeCode(5 * time.Second); code != websocket.ClosePolicyViolation {
					t.Fatalf("banned socket closed with %d, want 1008", code)
				}
			}
			// Others are not touched.
			other := from(t, repNode.ws, "other", "198.51.100.77")
			other.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeText})
			other.expect("queued")
			other.send(wire.Request{Type: wire.TypeLeave})
			other.expect("idle")

			// The operator sees the ban on every node and lifts it.
			code, body := adminDo(t, "GET", repNode.url+"/api/bans", "op", nil)
			bans, _ := body["bans"].([]any)
			if code != 200 || len(bans) != 1 {
				t.Fatalf("GET /api/bans = %d %v", code, body)
			}
			ban := bans[0].(map[string]any)
			if ban["session"] != bad.welcome.str("session") || ban["ip_hash"] == "" || ban["by"] != "reports" {
				t.Fatalf("ban = %v", ban)
			}
			if code, _ := adminDo(t, "DELETE", badNode.url+"/api/bans/"+ban["id"].(string), "op", nil); code != http.StatusNoContent {
				t.Fatalf("DELETE = %d", code)
			}
			if code, _ := adminDo(t, "DELETE", badNode.url+"/api/bans/"+ban["id"].(string), "op", nil); code != http.StatusNotFound {
				t.Fatalf("second DELETE = %d, want 404", code)
			}
			bad.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeText})
			bad.expect("queued")

			// An operator's address ban takes a waiting session out at once.
			code, body = adminDo(t, "POST", badNode.url+"/api/bans", "op",
				map[string]any{"ip": "203.0.113.9", "duration": "1h", "reason": "abuse"})
			if code != http.StatusCreated || body["by"] != "admin" || body["ip_hash"] == "" {
				t.Fatalf("POST /api/bans = %d %v", code, body)
			}
			expectBanned(t, bad, "", time.Hour)
			bad.expect("idle")
			// The queue is empty again: another stranger waits alone.
			other.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeText})
			other.expect("queued")
			if _, err := readWithin(other, 500*time.Millisecond); err == nil {
				t.Fatal("the banned session was matched after its ban")
			}
		})
	}
}

// readWithin returns the next message or the read error (a timeout: none).
func readWithin(c *client, d time.Duration) (msg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	m, err := c.wc.Next(ctx)
	if err != nil {
		return nil, err
	}
	return m.Fields(), nil
}

func TestBanAPIRefusesBadInput(t *testing.T) {
	cfg := testConfig(t)
	banConfig(cfg)
	n := startNode(t, cfg)
	for _, tc := range []struct {
		name string
		body any
		want int
	}{
		{"not JSON", "{", 400},
		{"names nobody", map[string]any{"reason": "x"}, 400},
		{"bad ip", map[string]any{"ip": "999.1.1.1"}, 400},
		{"ip and hash", map[string]any{"ip": "192.0.2.1", "ip_hash": "abc"}, 400},
		{"negative duration", map[string]any{"session": "s", "duration": "-1h"}, 400},
		{"endless duration", map[string]any{"session": "s", "duration": "100000h"}, 400},
		{"unknown field", map[string]any{"session": "s", "forever": true}, 400},
		{"wrong type", map[string]any{"session": 5}, 400},
		{"session ban", map[string]any{"session": "s", "duration": "10m"}, 201},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := adminDo(t, "POST", n.url+"/api/bans", "op", tc.body)
			if code != tc.want {
				t.Fatalf("POST %v = %d %v, want %d", tc.body, code, body, tc.want)
			}
			if code == 400 && body["error"] == "" {
				t.Fatal("a refusal without a reason")
			}
		})
	}
	for _, m := range []string{"GET", "POST"} {
		if code, _ := adminDo(t, m, n.url+"/api/bans", "", map[string]any{"session": "s"}); code != http.StatusUnauthorized {
			t.Fatalf("%s without the token = %d, want 401", m, code)
		}
	}
	if code, body := adminDo(t, "GET", n.url+"/api/bans", "op", nil); code != 200 || len(body["bans"].([]any)) != 1 {
		t.Fatalf("GET /api/bans = %d %v, want the one session ban", code, body)
	}
}
