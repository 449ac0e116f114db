package node

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/internal/testtool"
	"github.com/duetchat/duet/wire"
)

// Connection lifecycle over real sockets: resume and its grace, clean and
// abrupt closes, pings, shutdown, and 1,000 sockets at once.

func TestResume(t *testing.T) {
	n := startNode(t, testConfig(t))
	a, b, room := pair(t, dial(t, n.ws, "a", nil), dial(t, n.ws, "b", nil), "video")
	a.send(wire.Request{Type: wire.TypeReady, Room: room})
	b.send(wire.Request{Type: wire.TypeReady, Room: room})
	session, token := a.welcome.str("session"), a.welcome.str("token")

	a.drop()
	if m := b.expect("peer_reconnecting"); m.str("room") != room {
		t.Fatalf("peer_reconnecting = %v", m)
	}
	// While a is away: chat waits for it; signals wait for its ready.
	b.send(wire.Request{Type: wire.TypeChat, Room: room, Text: ptr("are you there?")})
	b.send(wire.Request{Type: wire.TypeOffer, Room: room, SDP: "v=0 restart"})
	// Frames on one socket are handled in order: once this error is back,
	// the chat and offer above were handled before a resumes.
	b.send(map[string]any{"type": "barrier"})
	b.expectError("unknown_type", "barrier")

	a2 := dial(t, n.ws+"?resume="+token, "a2", nil)
	if a2.welcome.str("session") != session {
		t.Fatalf("resume gave session %q, want %q", a2.welcome.str("session"), session)
	}
	if a2.welcome.str("token") == "" {
		t.Fatal("resume welcome without token")
	}
	m := a2.expect("matched")
	if m.str("room") != room || m.str("role") != "offerer" {
		t.Fatalf("matched after resume = %v (want room %s, role offerer)", m, room)
	}
	if m := a2.expect("chat"); m.str("text") != "are you there?" {
		t.Fatalf("missed chat = %v", m)
	}
	if m := b.expect("peer_resumed"); m.str("room") != room {
		t.Fatalf("peer_resumed = %v", m)
	}
	// After resume both restart ICE: a new offer waits for a's ready.
	b.send(wire.Request{Type: wire.TypeOffer, Room: room, SDP: "v=0 after"})
	a2.send(wire.Request{Type: wire.TypeReady, Room: room})
	if m := a2.expect("offer"); m.str("sdp") != "v=0 after" {
		t.Fatalf("offer after resume = %v, want only the post-resume one", m)
	}
	// The old token is spent; the newest works.
	old := dial(t, n.ws+"?resume="+token, "old", nil)
	if old.welcome.str("session") == session {
		t.Fatal("a spent token resumed the session")
	}
	old.expectError("bad_request", "resume")
}

func TestResumeGraceExpires(t *testing.T) {
	cfg := testConfig(t)
	cfg.Signal.ResumeGrace = 300 * time.Millisecond
	n := startNode(t, cfg)
	a, b, room := pair(t, dial(t, n.ws, "a", nil), dial(t, n.ws, "b", nil), "text")
	a.drop()
	b.expect("peer_reconnecting")
	if m := b.expect("peer_left"); m.str("reason") != "disconnected" || m.str("room") != room {
		t.Fatalf("peer_left = %v", m)
	}
	late := dial(t, n.ws+"?resume="+a.welcome.str("token"), "late", nil)
	if late.welcome.str("session") == a.welcome.str("session") {
		t.Fatal("resumed after the grace period")
	}
	late.expectError("bad_request", "resume")
}

func TestCloseFrameEndsAtOnce(t *testing.T) {
	n := startNode(t, testConfig(t))
	a, b, room := pair(t, dial(t, n.ws, "a", nil), dial(t, n.ws, "b", nil), "text")
	_ = a.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"))
	if m := b.expect("peer_left"); m.str("reason") != "disconnected" || m.str("room") != room {
		t.Fatalf("peer_left = %v (no peer_reconnecting for a clean close)", m)
	}
}

func TestDropWhileWaitingLeavesQueue(t *testing.T) {
	n := startNode(t, testConfig(t))
	a := dial(t, n.ws, "a", nil)
	a.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeVideo})
	a.expect("queued")
	a.drop()
	waitFor(t, "queue empty after drop", func() bool {
		_, st := getJSON(t, n.url+"/api/stats")
		return fmt.Sprint(st["waiting"]) == "map[text:0 video:0]"
	})
	// A newcomer is not matched with the ghost...
	b := dial(t, n.ws, "b", nil)
	b.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeVideo})
	b.expect("queued")
	// ...and the resumed session is queued again, then matched with b.
	a2 := dial(t, n.ws+"?resume="+a.welcome.str("token"), "a2", nil)
	a2.expect("queued")
	a2.expect("matched")
	b.expect("matched")
}

func TestThousandJoinThenNextTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 sockets")
	}
	cfg := testConfig(t)
	thousandLimits(cfg)
	thousandJoinThenNextTwice(t, startNode(t, cfg))
}

// TestThousandJoinOverThreeNodes: the same, with the sockets spread over
// three nodes on one Redis, so most rooms span two nodes.
func TestThousandJoinOverThreeNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 sockets")
	}
	nodes := startNodesWith(t, testtool.StartRedis(t), thousandLimits, "n1", "n2", "n3")
	thousandJoinThenNextTwice(t, nodes...)
}

func thousandLimits(cfg *configs.Config) {
	cfg.Limits.ConnectionsPerIP = 5000
	cfg.Limits.ConnectBurstPerIP = 5000
	cfg.Limits.IPMessageBurst = 100000
	cfg.Limits.IPMessageRate = 100000
	cfg.Limits.SessionsPerIP = 5000
	cfg.Limits.JoinsPerMinute, cfg.Limits.IPJoinsPerMinute = 100000, 100000
	// A pair that met may be the last two left: with a short interest
	// timeout the avoid-repeat exception lets them meet again quickly.
	cfg.Matcher.InterestTimeout = 500 * time.Millisecond
}

func thousandJoinThenNextTwice(t *testing.T, nodes ...*testNode) {
	const N = 1000
	clients := make([]*client, N)
	sessions := map[string]int{}
	for i := range clients {
		clients[i] = dial(t, nodes[i%len(nodes)].ws, fmt.Sprint("c", i), nil)
		sessions[clients[i].welcome.str("session")] = i
	}
	if len(sessions) != N {
		t.Fatalf("%d distinct sessions for %d sockets", len(sessions), N)
	}
	round := func(name string, first wire.Request) {
		rooms := make([]string, N)
		errs := make(chan string, N)
		var wg sync.WaitGroup
		for i, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := c.wc.Send(first); err != nil {
					errs <- err.Error()
					return
				}
				// Until matched, only queued or the old stranger's
				// peer_left may arrive.
				for {
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					m, err := c.wc.Next(ctx)
					cancel()
					if err != nil {
						errs <- fmt.Sprintf("%s: client %d: %v", name, i, err)
						return
					}
					switch m.Type {
					case wire.TypeQueued, wire.TypePeerLeft:
						continue
					case wire.TypeMatched:
						rooms[i] = m.Room
						return
					}
					errs <- fmt.Sprintf("%s: client %d got %s", name, i, m.Raw)
					return
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Fatal(e)
		}
		count := map[string]int{}
		perNode := make([]map[string]bool, len(nodes))
		for i, r := range rooms {
			count[r]++
			if perNode[i%len(nodes)] == nil {
				perNode[i%len(nodes)] = map[string]bool{}
			}
			perNode[i%len(nodes)][r] = true
		}
		if len(count) != N/2 {
			t.Fatalf("%s: %d rooms, want %d", name, len(count), N/2)
		}
		for r, c := range count {
			if c != 2 {
				t.Fatalf("%s: room %s has %d members", name, r, c)
			}
		}
		// Each node counts the rooms it holds a stranger of; nobody waits.
		for k, n := range nodes {
			_, st := getJSON(t, n.url+"/api/stats")
			if st["rooms"] != float64(len(perNode[k])) || fmt.Sprint(st["waiting"]) != "map[text:0 video:0]" {
				t.Fatalf("%s: node %d stats %v, want %d rooms", name, k, st, len(perNode[k]))
			}
		}
	}
	round("join", wire.Request{Type: wire.TypeQueue, Mode: wire.ModeVideo})
	round("next 1", wire.Request{Type: wire.TypeNext})
	round("next 2", wire.Request{Type: wire.TypeNext})
}

func TestShutdownTellsClients(t *testing.T) {
	n := startNode(t, testConfig(t))
	a := dial(t, n.ws, "a", nil)
	go n.stop()
	a.expectError("unavailable", "")
	if code := a.closeCode(5 * time.Second); code != websocket.CloseServiceRestart {
		t.Fatalf("close code %d, want 1012", code)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMissedPongsDropTheSocket(t *testing.T) {
	cfg := testConfig(t)
	cfg.Signal.PingInterval = 200 * time.Millisecond
	n := startNode(t, cfg)
	a, b, room := pair(t, dial(t, n.ws, "a", nil), dial(t, n.ws, "b", nil), "text")
	_ = a // a reads nothing from here on
	start := time.Now()
	m := b.read(5 * time.Second)
	if m.str("type") != "peer_reconnecting" || m.str("room") != room {
		t.Fatalf("b got %v, want peer_reconnecting", m)
	}
	if waited := time.Since(start); waited < 2*cfg.Signal.PingInterval {
		t.Fatalf("dropped after %s: before two ping intervals", waited)
	}
}

func TestPongsKeepTheSocket(t *testing.T) {
	cfg := testConfig(t)
	cfg.Signal.PingInterval = 100 * time.Millisecond
	n := startNode(t, cfg)
	a, b, room := pair(t, dial(t, n.ws, "a", nil), dial(t, n.ws, "b", nil), "text")
	inbox := func(c *client) chan msg {
		ch := make(chan msg, 16)
		go func() {
			defer close(ch)
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				m, err := c.wc.Next(ctx)
				cancel()
				if err != nil {
					return
				}
				ch <- m.Fields()
			}
		}()
		return ch
	}
	aIn, bIn := inbox(a), inbox(b)
	// Ten ping intervals pass: the time itself is what is under test.
	time.Sleep(10 * cfg.Signal.PingInterval)
	if err := a.wc.Chat(room, "still here"); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-bIn:
		if m.str("type") != "chat" || m.str("text") != "still here" {
			t.Fatalf("b got %v first, want the chat", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("chat never arrived")
	}
	select {
	case m, ok := <-aIn:
		if ok {
			t.Fatalf("a got %v, want nothing", m)
		}
		t.Fatal("a's socket ended")
	default:
	}
}
