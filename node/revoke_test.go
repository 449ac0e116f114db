package node

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/internal/testtool"
	"github.com/duetchat/duet/wire"
)

// A TURN credential from matched works while its room lives and is
// refused once the room has ended or the session is banned, long before
// its TTL: on the node that minted it and, on Redis, on every other node.
func TestTURNCredentialEndsWithItsRoom(t *testing.T) {
	t.Run("room ended", func(t *testing.T) {
		n := startNode(t, testConfig(t))
		a, _, ma, _ := matchedPair(t, n)
		cred := iceServers(t, ma)[1]
		relayFor(t, cred)
		addr := strings.TrimPrefix(n.url, "http://")
		const cut = `duet_turn_allocations_cut_total`
		if v := scrape(t, addr, cut); v != 0 {
			t.Fatalf("%s = %v while the room lives, want 0", cut, v)
		}
		a.send(wire.Request{Type: wire.TypeLeave})
		a.expect("idle")
		if _, err := allocateAt(t, udpURLAddr(cred), cred); err == nil {
			t.Fatal("the credential of an ended room still allocates")
		}
		// The allocation made while the room lived stops relaying too.
		deadline := time.Now().Add(5 * time.Second)
		for scrape(t, addr, cut) != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("%s = %v after the room ended, want 1", cut, scrape(t, addr, cut))
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("session banned", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.Admin.Token = "op"
		n := startNode(t, cfg)
		a, b, ma, mb := matchedPair(t, n)
		credA, credB := iceServers(t, ma)[1], iceServers(t, mb)[1]
		relayFor(t, credA)
		code, body := adminDo(t, "POST", n.url+"/api/bans", "op",
			map[string]any{"session": a.welcome.str("session"), "duration": "1h", "reason": "abuse"})
		if code != http.StatusCreated {
			t.Fatalf("POST /api/bans = %d %v", code, body)
		}
		b.expect("peer_left")
		if _, err := allocateAt(t, udpURLAddr(credA), credA); err == nil {
			t.Fatal("a banned session's credential still allocates")
		}
		// The room is over for b too, so its credential goes as well; a
		// fresh room's credentials are untouched.
		if _, err := allocateAt(t, udpURLAddr(credB), credB); err == nil {
			t.Fatal("the stranger's credential outlived the banned room")
		}
		_, _, mc, _ := matchedPair(t, n)
		relayFor(t, iceServers(t, mc)[1])
	})

	t.Run("every node on Redis", func(t *testing.T) {
		addr := testtool.StartRedis(t)
		withTURN := func(c *configs.Config) { c.Roles.TURN = true }
		nodes := startNodesWith(t, addr, withTURN, "n1", "n2")
		// Learn node 2's relay address from a room of its own.
		_, _, m2, _ := matchedPair(t, nodes[1])
		relay2 := udpURLAddr(iceServers(t, m2)[1])
		a, _, ma, _ := matchedPair(t, nodes[0])
		cred := iceServers(t, ma)[1]
		// One secret on every node: node 1's credential works on node 2.
		if _, err := allocateAt(t, relay2, cred); err != nil {
			t.Fatalf("node 1's live credential refused by node 2: %v", err)
		}
		a.send(wire.Request{Type: wire.TypeLeave})
		a.expect("idle")
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, err := allocateAt(t, relay2, cred)
			if err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("node 2 still takes the credential of a room that ended on node 1")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// TestRevokerPublishesOnlyWithARelay: a node without a relay minted no
// room credential and has none to refuse, so it neither publishes
// revocations nor listens for them; a node with one does both on Redis.
func TestRevokerPublishesOnlyWithARelay(t *testing.T) {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:1"}})
	t.Cleanup(func() { _ = rdb.Close() })
	var revoked []string
	relay := func(code string) { revoked = append(revoked, code) }
	for _, tc := range []struct {
		name      string
		relay     func(string)
		rdb       redis.UniversalClient
		publishes bool
	}{
		{"relay on Redis", relay, rdb, true},
		{"relay, memory store", relay, nil, false},
		{"no relay on Redis", nil, rdb, false},
		{"no relay, memory store", nil, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			revoked = nil
			r := newRevoker(tc.relay, tc.rdb, "t:", slog.Default())
			r.RoomEnded("room1")
			if got := r.queue != nil && len(r.queue) == 1; got != tc.publishes {
				t.Fatalf("queued for publishing: %v, want %v", got, tc.publishes)
			}
			if want := tc.relay != nil; (len(revoked) == 1) != want {
				t.Fatalf("revoked on this node's relay: %v, want %v", revoked, want)
			}
			if !tc.publishes {
				// Nothing to listen to either: run returns at once.
				if err := r.run(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
