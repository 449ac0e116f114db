package node

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/internal/testtool"
	"github.com/duetchat/duet/wire"
)

// redisConfig is testConfig on a shared Redis, as node name.
func redisConfig(t *testing.T, addr, name string) *configs.Config {
	t.Helper()
	cfg := testConfig(t)
	cfg.Store.Backend = "redis"
	cfg.Store.Redis.Addrs = []string{addr}
	cfg.Store.Redis.KeyPrefix = "t:" + t.Name() + ":"
	cfg.Store.Redis.Node = name
	cfg.Roles.TURN = false
	// A stopping node waits for its sessions to move elsewhere; the test
	// clients are gone by then, so do not wait long for them.
	cfg.HTTP.ShutdownGrace = 500 * time.Millisecond
	return cfg
}

func startNodes(t *testing.T, addr string, names ...string) []*testNode {
	t.Helper()
	return startNodesWith(t, addr, func(*configs.Config) {}, names...)
}

func startNodesWith(t *testing.T, addr string, tweak func(*configs.Config), names ...string) []*testNode {
	t.Helper()
	var out []*testNode
	for _, n := range names {
		cfg := redisConfig(t, addr, n)
		tweak(cfg)
		out = append(out, startNode(t, cfg))
	}
	return out
}

// churn lifts the limits a fast test client would hit and lets the same
// two meet again at once.
func churn(cfg *configs.Config) {
	cfg.Limits.ConnectionsPerIP, cfg.Limits.ConnectBurstPerIP = 5000, 5000
	cfg.Limits.IPMessageRate, cfg.Limits.IPMessageBurst = 100000, 100000
	cfg.Limits.QueueRate, cfg.Limits.QueueBurst = 1000, 1000
	cfg.Limits.SessionsPerIP = 5000
	cfg.Limits.JoinsPerMinute, cfg.Limits.IPJoinsPerMinute = 100000, 100000
	cfg.Limits.MessageRate, cfg.Limits.MessageBurst = 1000, 1000
	cfg.Matcher.AvoidRepeat = 0
}

// TestClusterRelayAcrossNodes: two strangers on two nodes are matched and
// relay signalling, chat, typing and next as they would on one node.
func TestClusterRelayAcrossNodes(t *testing.T) {
	nodes := startNodes(t, testtool.StartRedis(t), "n1", "n2")
	a, b := dial(t, nodes[0].ws, "a", nil), dial(t, nodes[1].ws, "b", nil)
	off, ans, room := pair(t, a, b, "video")

	// Signals wait for the answerer's ready, on its own node, in order.
	off.send(wire.Request{Type: wire.TypeOffer, Room: room, SDP: "v=0 offer"})
	for _, c := range []string{"candidate:1 1 udp 1 10.0.0.1 1 typ host", "candidate:2 1 udp 1 10.0.0.2 2 typ host"} {
		off.send(map[string]any{"type": "candidate", "room": room, "candidate": map[string]any{"candidate": c, "sdpMid": "0", "sdpMLineIndex": 0}})
	}
	off.send(wire.Request{Type: wire.TypeChat, Room: room, Text: ptr("hello from n?")})
	if m := ans.expect("chat"); m.str("text") != "hello from n?" {
		t.Fatalf("chat = %v", m)
	}
	ans.send(wire.Request{Type: wire.TypeReady, Room: room})
	if m := ans.expect("offer"); m.str("sdp") != "v=0 offer" {
		t.Fatalf("offer = %v", m)
	}
	for _, want := range []string{"10.0.0.1", "10.0.0.2"} {
		m := ans.expect("candidate")
		c, _ := m["candidate"].(map[string]any)
		if s, _ := c["candidate"].(string); !strings.Contains(s, want) {
			t.Fatalf("candidate = %v, want %s (order kept)", m, want)
		}
	}
	off.send(wire.Request{Type: wire.TypeReady, Room: room})
	ans.send(wire.Request{Type: wire.TypeAnswer, Room: room, SDP: "v=0 answer"})
	if m := off.expect("answer"); m.str("sdp") != "v=0 answer" {
		t.Fatalf("answer = %v", m)
	}
	ans.send(wire.Request{Type: wire.TypeTyping, Room: room, On: ptr(true)})
	if m := off.expect("typing"); m["on"] != true {
		t.Fatalf("typing = %v", m)
	}
	// A room of the other node is not ours.
	off.send(wire.Request{Type: wire.TypeChat, Room: "not-" + room, Text: ptr("x")})
	off.expectError("not_in_room", "chat")

	off.send(wire.Request{Type: wire.TypeNext})
	off.expect("queued")
	if m := ans.expect("peer_left"); m.str("reason") != "next" || m.str("room") != room {
		t.Fatalf("peer_left = %v", m)
	}
	// After next: the two are kept apart (avoid-repeat) across nodes too,
	// and the one left behind can queue again.
	ans.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeText})
	ans.expect("queued")
	off.send(wire.Request{Type: wire.TypeLeave})
	off.expect("idle")
}

// TestClusterResumeOnAnotherNode: a stranger whose socket drops resumes on
// a third node and the room carries on there.
func TestClusterResumeOnAnotherNode(t *testing.T) {
	nodes := startNodes(t, testtool.StartRedis(t), "n1", "n2", "n3")
	a, b := dial(t, nodes[0].ws, "a", nil), dial(t, nodes[1].ws, "b", nil)
	a.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeVideo})
	a.expect("queued")
	b.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeVideo})
	b.expect("queued")
	ma, _ := a.expect("matched"), b.expect("matched")
	room, role := ma.str("room"), ma.str("role")
	a.send(wire.Request{Type: wire.TypeReady, Room: room})
	b.send(wire.Request{Type: wire.TypeReady, Room: room})
	session, token := a.welcome.str("session"), a.welcome.str("token")

	a.drop()
	b.expect("peer_reconnecting")
	b.send(wire.Request{Type: wire.TypeChat, Room: room, Text: ptr("still there?")})
	b.send(map[string]any{"type": "barrier"})
	b.expectError("unknown_type", "barrier")

	a2 := dial(t, nodes[2].ws+"?resume="+token, "a2", nil)
	if a2.welcome.str("session") != session || a2.welcome["resumed"] != true {
		t.Fatalf("welcome on n3 = %v, want session %s resumed", a2.welcome, session)
	}
	m := a2.expect("matched")
	if m.str("room") != room || m.str("role") != role {
		t.Fatalf("matched on n3 = %v, want room %s role %s", m, room, role)
	}
	// What b said while a was away was held on n1 and follows a to n3.
	if m := a2.expect("chat"); m.str("text") != "still there?" {
		t.Fatalf("missed chat = %v", m)
	}
	if m := b.expect("peer_resumed"); m.str("room") != room {
		t.Fatalf("peer_resumed = %v", m)
	}
	a2.send(wire.Request{Type: wire.TypeChat, Room: room, Text: ptr("from n3")})
	if m := b.expect("chat"); m.str("text") != "from n3" {
		t.Fatalf("chat = %v", m)
	}
	b.send(wire.Request{Type: wire.TypeChat, Room: room, Text: ptr("to n3")})
	if m := a2.expect("chat"); m.str("text") != "to n3" {
		t.Fatalf("chat = %v", m)
	}
	// n1 let go of the session: the old token is spent everywhere.
	waitFor(t, "n1 to forget the session", func() bool {
		_, st := getJSON(t, nodes[0].url+"/api/stats")
		return st["online"] == float64(0) && st["rooms"] == float64(0)
	})
	old := dial(t, nodes[0].ws+"?resume="+token, "old", nil)
	if old.welcome.str("session") == session {
		t.Fatal("a spent token resumed the session")
	}
	old.expectError("bad_request", "resume")

	a2.send(wire.Request{Type: wire.TypeLeave})
	a2.expect("idle")
	if m := b.expect("peer_left"); m.str("reason") != "leave" {
		t.Fatalf("peer_left = %v", m)
	}
}

// TestClusterRedisOutage: with Redis gone the node says it is not ready
// and a queue gets `unavailable`; when Redis is back it recovers by itself.
func TestClusterRedisOutage(t *testing.T) {
	r := testtool.NewRedis(t)
	nodes := startNodes(t, r.Addr, "n1", "n2")
	r.Kill()
	for _, n := range nodes {
		waitFor(t, "readyz to fail", func() bool {
			resp, err := http.Get(n.url + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusServiceUnavailable
		})
	}
	a := dial(t, nodes[0].ws, "a", nil)
	a.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeText})
	a.expectError("unavailable", "queue")

	r.Start()
	for _, n := range nodes {
		waitReady(t, n.url)
	}
	b := dial(t, nodes[1].ws, "b", nil)
	start := time.Now()
	pair(t, a, b, "text")
	t.Logf("matched %v after Redis came back", time.Since(start))
}

// TestClusterRedisRestartUnderLoad: Redis is SIGKILLed while strangers on
// two nodes keep queueing, matching and leaving, then started again empty.
// Nobody is ever in two rooms, and everyone still queued gets matched soon
// after Redis is back.
func TestClusterRedisRestartUnderLoad(t *testing.T) {
	r := testtool.NewRedis(t)
	nodes := startNodesWith(t, r.Addr, churn, "n1", "n2")
	const users = 16
	type event struct {
		user int
		kind string // matched | peer_left | unavailable
		room string
		at   time.Time
	}
	events := make(chan event, 10000)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for u := range users {
		c := dial(t, nodes[u%2].ws, fmt.Sprintf("u%d", u), nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			loadUser(c, u, stop, func(kind, room string) {
				events <- event{u, kind, room, time.Now()}
			})
		}()
	}
	time.Sleep(time.Second) // let load run: this is the workload, not a wait for a condition
	r.Kill()
	killed := time.Now()
	time.Sleep(2 * time.Second)
	r.Start()
	back := time.Now()
	// Matching resumes: within a generous bound, matches happen again.
	var firstMatch, lastMatch time.Time
	deadline := time.After(15 * time.Second)
	inRoom := map[int]string{}
	rooms := map[string][]int{}
	matchedAfter := map[int]bool{}
	last := map[int]string{}
collect:
	for {
		select {
		case e := <-events:
			switch e.kind {
			case "matched":
				if cur := inRoom[e.user]; cur != "" {
					t.Fatalf("user %d matched into %s while still in %s", e.user, e.room, cur)
				}
				inRoom[e.user] = e.room
				rooms[e.room] = append(rooms[e.room], e.user)
				if len(rooms[e.room]) > 2 {
					t.Fatalf("room %s has %v", e.room, rooms[e.room])
				}
				if e.at.After(back) {
					if len(matchedAfter) == 0 {
						firstMatch = e.at
					}
					matchedAfter[e.user] = true
					lastMatch = e.at
				}
			case "left":
				inRoom[e.user] = ""
			default:
				last[e.user] = e.kind + "@" + e.at.Sub(back).String()
			}
			if len(matchedAfter) == users {
				break collect
			}
		case <-deadline:
			break collect
		}
	}
	close(stop)
	wg.Wait()
	if len(matchedAfter) != users {
		for _, n := range nodes {
			_, st := getJSON(t, n.url+"/api/stats")
			t.Logf("%s: %v", n.url, st)
		}
		t.Fatalf("after Redis came back only %d of %d users were matched again within 15s; last messages: %v", len(matchedAfter), users, last)
	}
	if d := firstMatch.Sub(back); d > 5*time.Second {
		t.Fatalf("the first match after Redis came back took %v; want within 5s", d)
	}
	t.Logf("Redis down %v; all %d users matched again by %v after it came back", back.Sub(killed), users, lastMatch.Sub(back))
}

// loadUser queues for text, and on each match leaves at once and queues
// again, until stop. unavailable errors are retried after a pause.
func loadUser(c *client, u int, stop chan struct{}, report func(kind, room string)) {
	msgs := make(chan msg, 64)
	go func() {
		defer close(msgs)
		for {
			m, err := c.wc.Next(context.Background()) // Close ends the wait
			if err != nil {
				msgs <- msg{"type": "readerr", "code": err.Error()}
				return
			}
			msgs <- m.Fields()
		}
	}()
	defer func() {
		_ = c.wc.Close()
		for range msgs {
		}
	}()
	queue := func() { _ = c.wc.Queue(wire.ModeText) }
	queue()
	room := ""
	for {
		var m msg
		select {
		case <-stop:
			return
		case mm, ok := <-msgs:
			if !ok {
				return
			}
			m = mm
		}
		report("msg:"+m.str("type")+":"+m.str("code"), room)
		switch m.str("type") {
		case "matched":
			room = m.str("room")
			report("matched", room)
			_ = c.wc.Leave()
		case "idle":
			if room != "" {
				report("left", room)
				room = ""
			}
			queue()
		case "peer_left":
			report("left", room)
			room = ""
			queue()
		case "error":
			if m.str("code") == "unavailable" {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				queue()
			}
		}
	}
}

// TestClusterOnRedisCluster: several addresses make a Redis Cluster client;
// two nodes on a three-shard Cluster pair and relay as on one Redis.
func TestClusterOnRedisCluster(t *testing.T) {
	addrs := testtool.StartRedisCluster(t)
	var nodes []*testNode
	for _, name := range []string{"n1", "n2"} {
		cfg := redisConfig(t, "", name)
		cfg.Store.Redis.Addrs = addrs
		nodes = append(nodes, startNode(t, cfg))
	}
	a, b := dial(t, nodes[0].ws, "a", nil), dial(t, nodes[1].ws, "b", nil)
	_, _, room := pair(t, a, b, "text")
	a.send(wire.Request{Type: wire.TypeChat, Room: room, Text: ptr("over the cluster")})
	if m := b.expect("chat"); m.str("text") != "over the cluster" {
		t.Fatalf("chat = %v", m)
	}
	b.send(wire.Request{Type: wire.TypeLeave})
	b.expect("idle")
	if m := a.expect("peer_left"); m.str("reason") != "leave" {
		t.Fatalf("peer_left = %v", m)
	}
}

// TestSharedSalt: every node on one Redis gets the same IP-hash salt, so
// an address hashes alike on all of them (bans key on the hash).
func TestSharedSalt(t *testing.T) {
	addr := testtool.StartRedis(t)
	var salts [][]byte
	for range 2 {
		rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}})
		t.Cleanup(func() { _ = rdb.Close() })
		s, err := sharedSalt(context.Background(), rdb, "t:")
		if err != nil {
			t.Fatal(err)
		}
		salts = append(salts, s)
	}
	if len(salts[0]) != 32 || !bytes.Equal(salts[0], salts[1]) {
		t.Fatalf("salts %x and %x", salts[0], salts[1])
	}
}

// TestClusterDrain: a node shutting down tells its clients to reconnect
// and stays up to hand their rooms over: both strangers of a room on the
// stopping node, and one whose stranger is on another node, resume on a
// surviving node in the same room and role, and talk again.
func TestClusterDrain(t *testing.T) {
	addr := testtool.StartRedis(t)
	n1 := startNodesWith(t, addr, func(cfg *configs.Config) { cfg.HTTP.ShutdownGrace = 10 * time.Second }, "n1")[0]
	n2 := startNodes(t, addr, "n2")[0]
	a, b, room := pair(t, dial(t, n1.ws, "a", nil), dial(t, n1.ws, "b", nil), "text")
	c, d := dial(t, n1.ws, "c", nil), dial(t, n2.ws, "d", nil)
	_, _, room2 := pair(t, c, d, "text")
	stopped := make(chan struct{})
	go func() { n1.stop(); close(stopped) }()
	for _, x := range []*client{a, b, c} {
		x.expectError("unavailable", "")
		if code := x.closeCode(5 * time.Second); code != websocket.CloseServiceRestart {
			t.Fatalf("%s: close %d, want 1012", x.name, code)
		}
	}
	if m := d.expect("peer_reconnecting"); m.str("room") != room2 {
		t.Fatalf("d got %v", m)
	}
	resume := func(x *client, room string) *client {
		t.Helper()
		y := dial(t, n2.ws+"?resume="+x.welcome.str("token"), x.name+"'", nil)
		if y.welcome.str("session") != x.welcome.str("session") {
			t.Fatalf("%s: resumed as a new session", x.name)
		}
		m := y.expect("matched")
		if m.str("room") != room {
			t.Fatalf("%s: matched %v, want room %s", x.name, m, room)
		}
		return y
	}
	a2, b2, c2 := resume(a, room), resume(b, room), resume(c, room2)
	if m := d.expect("peer_resumed"); m.str("room") != room2 {
		t.Fatalf("d got %v", m)
	}
	for _, p := range [][2]*client{{a2, b2}, {b2, a2}, {c2, d}, {d, c2}} {
		r := room
		if p[0] == c2 || p[0] == d {
			r = room2
		}
		p[0].send(wire.Request{Type: wire.TypeChat, Room: r, Text: ptr("still here, " + p[0].name)})
		for {
			m := p[1].read(5 * time.Second)
			if m.str("type") == "peer_resumed" || m.str("type") == "peer_reconnecting" {
				continue // the pair's own comings and goings, in order
			}
			if m.str("type") != "chat" || m.str("text") != "still here, "+p[0].name {
				t.Fatalf("%s got %v", p[1].name, m)
			}
			break
		}
	}
	select {
	case <-stopped: // the drain ended once every session had moved
	case <-time.After(9 * time.Second):
		t.Fatal("n1 still draining with no session left")
	}
}
