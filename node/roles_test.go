package node

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/wire"
)

// turnURLs lists the turn: and turns: URLs a matched message hands out.
func turnURLs(m msg) []string {
	var out []string
	list, _ := m["ice_servers"].([]any)
	for _, e := range list {
		o, _ := e.(map[string]any)
		urls, _ := o["urls"].([]any)
		for _, u := range urls {
			if s, _ := u.(string); strings.HasPrefix(s, "turn:") || strings.HasPrefix(s, "turns:") {
				out = append(out, s)
			}
		}
	}
	return out
}

// roles.turn and roles.sfu are the one switch of their role.
func TestRoleSwitches(t *testing.T) {
	t.Run("roles.turn false: no relay, no TURN in matched", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.Roles.TURN = false
		tn, n := serveNode(t, cfg, nil, nil, "/readyz")
		if n.turn != nil {
			t.Fatal("a relay runs with roles.turn false")
		}
		a, _, ma, mb := matchedPair(t, tn)
		if f, _ := a.welcome["features"].(map[string]any); f["turn"] == true {
			t.Errorf("welcome.features = %v, want no turn", a.welcome["features"])
		}
		for _, m := range []msg{ma, mb} {
			if urls := turnURLs(m); len(urls) != 0 {
				t.Errorf("matched hands out TURN %v with roles.turn false", urls)
			}
		}
		if n.sfu == nil {
			t.Error("roles.turn false stopped the SFU too")
		}
	})

	t.Run("roles.sfu false: fallback is unavailable", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.Roles.SFU = false
		tn, n := serveNode(t, cfg, nil, nil, "/readyz")
		if n.sfu != nil {
			t.Fatal("an SFU runs with roles.sfu false")
		}
		if n.turn == nil {
			t.Error("roles.sfu false stopped the relay too")
		}
		a, _, room := pair(t, dial(t, tn.ws, "a", nil), dial(t, tn.ws, "b", nil), "video")
		a.send(wire.Request{Type: wire.TypeFallback, Room: room, Reason: "ice failed"})
		a.expectError("unavailable", "fallback")
	})

	// The bench and lab scripts' DUET_TURN_ENABLED=false,
	// DUET_SFU_ENABLED=false and DUET_SFU_MODE=off still switch both off.
	for _, env := range [][]string{
		{"DUET_TURN_ENABLED=false", "DUET_SFU_ENABLED=false"},
		{"DUET_TURN_ENABLED=false", "DUET_SFU_MODE=off"},
		{"DUET_ROLES_TURN=false", "DUET_ROLES_SFU=false"},
	} {
		t.Run(strings.Join(env, " "), func(t *testing.T) {
			cfg, err := configs.Load("", env)
			if err != nil {
				t.Fatal(err)
			}
			tc := testConfig(t)
			cfg.PublicIP, cfg.SFU.ListenIP, cfg.SFU.UDPPort, cfg.SFU.TCPPort = tc.PublicIP, tc.SFU.ListenIP, 0, 0
			n, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			if n.turn != nil || n.sfu != nil || len(n.paths) != 0 {
				t.Errorf("relay %v, SFU %v, media paths %d: want none", n.turn != nil, n.sfu != nil, len(n.paths))
			}
		})
	}

	// A config built by hand with an old switch is refused, not misread.
	for name, set := range map[string]func(*configs.Config){
		"turn.enabled": func(c *configs.Config) { off := false; c.TURN.Enabled = &off },
		"sfu.enabled":  func(c *configs.Config) { off := false; c.SFU.Enabled = &off },
		"sfu.mode off": func(c *configs.Config) { c.SFU.Mode = "off" },
	} {
		t.Run("hand-built "+name, func(t *testing.T) {
			cfg := testConfig(t)
			set(cfg)
			n, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err == nil {
				n.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), "roles.turn / roles.sfu") {
				t.Errorf("error %q does not name the roles", err)
			}
		})
	}
}
