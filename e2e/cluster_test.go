package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/duetchat/duet/internal/testtool"
)

// wsPeer is a protocol client for tests that span processes.
type wsPeer struct {
	t       *testing.T
	name    string
	ws      *websocket.Conn
	welcome map[string]any
}

func dialPeer(t *testing.T, addr, query, name string) *wsPeer {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws"+query, nil)
	if err != nil {
		t.Fatalf("%s: dial %s: %v", name, addr, err)
	}
	t.Cleanup(func() { ws.Close() })
	p := &wsPeer{t: t, name: name, ws: ws}
	p.welcome = p.expect("welcome")
	return p
}

func (p *wsPeer) send(v map[string]any) {
	p.t.Helper()
	if err := p.ws.WriteJSON(v); err != nil {
		p.t.Fatalf("%s: write: %v", p.name, err)
	}
}

// expect reads until a message of type typ, skipping the types in skip;
// anything else fails the test.
func (p *wsPeer) expect(typ string, skip ...string) map[string]any {
	p.t.Helper()
	_ = p.ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		_, b, err := p.ws.ReadMessage()
		if err != nil {
			p.t.Fatalf("%s: waiting for %s: %v", p.name, typ, err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			p.t.Fatalf("%s: invalid JSON %q", p.name, b)
		}
		if m["type"] == typ {
			return m
		}
		skipped := false
		for _, s := range skip {
			skipped = skipped || m["type"] == s
		}
		if !skipped {
			p.t.Fatalf("%s: got %v while waiting for %s", p.name, m, typ)
		}
	}
}

func str(m map[string]any, k string) string { s, _ := m[k].(string); return s }

// TestClusterThreeProcesses: three duet processes on one Redis. Strangers
// on different nodes are matched and relay signalling and chat; one node
// is SIGKILLed and its stranger resumes on the third node, in the same
// room, with the same role.
func TestClusterThreeProcesses(t *testing.T) {
	redis := testtool.StartRedis(t)
	var nodes []*duet
	for i := range 3 {
		name := fmt.Sprintf("node%d", i+1)
		nodes = append(nodes, startDuetAs(t, name, "DUET_STORE_BACKEND=redis",
			"DUET_STORE_REDIS_ADDRS="+redis, "DUET_STORE_REDIS_NODE="+name,
			"DUET_STORE_REDIS_KEY_PREFIX=e2e:", "DUET_SIGNAL_RESUME_GRACE=6s", "DUET_HTTP_SHUTDOWN_GRACE=1s"))
	}
	a, b := dialPeer(t, nodes[0].addr, "", "a"), dialPeer(t, nodes[1].addr, "", "b")
	a.send(map[string]any{"type": "queue", "mode": "video"})
	a.expect("queued")
	b.send(map[string]any{"type": "queue", "mode": "video"})
	b.expect("queued")
	ma, mb := a.expect("matched"), b.expect("matched")
	room := str(ma, "room")
	if room == "" || str(mb, "room") != room || str(ma, "role") == str(mb, "role") {
		t.Fatalf("matched: %v / %v", ma, mb)
	}
	off, ans := a, b
	if str(ma, "role") == "answerer" {
		off, ans = b, a
	}
	for _, p := range []*wsPeer{a, b} {
		p.send(map[string]any{"type": "ready", "room": room})
	}
	off.send(map[string]any{"type": "offer", "room": room, "sdp": "v=0 cross-node"})
	if m := ans.expect("offer"); str(m, "sdp") != "v=0 cross-node" {
		t.Fatalf("offer = %v", m)
	}
	ans.send(map[string]any{"type": "answer", "room": room, "sdp": "v=0 answer"})
	if m := off.expect("answer"); str(m, "sdp") != "v=0 answer" {
		t.Fatalf("answer = %v", m)
	}
	a.send(map[string]any{"type": "chat", "room": room, "text": "hi from node1"})
	if m := b.expect("chat"); str(m, "text") != "hi from node1" {
		t.Fatalf("chat = %v", m)
	}

	// node1 dies without a word; a comes back through node3.
	token, session, role := str(a.welcome, "token"), str(a.welcome, "session"), str(ma, "role")
	nodes[0].proc.kill(t)
	a2 := dialPeer(t, nodes[2].addr, "?resume="+token, "a2")
	if str(a2.welcome, "session") != session || a2.welcome["resumed"] != true {
		t.Fatalf("welcome on node3 = %v, want session %s resumed", a2.welcome, session)
	}
	if m := a2.expect("matched"); str(m, "room") != room || str(m, "role") != role {
		t.Fatalf("matched on node3 = %v, want room %s as %s", m, room, role)
	}
	// b may first hear that a's node went quiet.
	b.expect("peer_resumed", "peer_reconnecting")
	a2.send(map[string]any{"type": "ready", "room": room})
	b.send(map[string]any{"type": "chat", "room": room, "text": "welcome back"})
	if m := a2.expect("chat"); str(m, "text") != "welcome back" {
		t.Fatalf("chat on node3 = %v", m)
	}
	a2.send(map[string]any{"type": "offer", "room": room, "sdp": "v=0 restart"})
	if m := b.expect("offer"); str(m, "sdp") != "v=0 restart" {
		t.Fatalf("offer after resume = %v", m)
	}
	a2.send(map[string]any{"type": "leave"})
	a2.expect("idle")
	if m := b.expect("peer_left"); str(m, "reason") != "leave" {
		t.Fatalf("peer_left = %v", m)
	}

	// The survivors still match each other, across nodes.
	c := dialPeer(t, nodes[2].addr, "", "c")
	b.send(map[string]any{"type": "queue", "mode": "text"})
	b.expect("queued")
	c.send(map[string]any{"type": "queue", "mode": "text"})
	c.expect("queued")
	if mb, mc := b.expect("matched"), c.expect("matched"); str(mb, "room") != str(mc, "room") {
		t.Fatalf("b and c in different rooms: %v / %v", mb, mc)
	}
	for _, n := range nodes[1:] {
		resp, err := http.Get("http://" + n.addr + "/readyz")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("a surviving node is not ready: %v %v", resp, err)
		}
		resp.Body.Close()
	}

	// node3 dies too and c never comes back: once node3's heartbeat
	// lapses b hears peer_reconnecting, and after the grace peer_left.
	nodes[2].proc.kill(t)
	start := time.Now()
	b.expect("peer_reconnecting")
	if m := b.expect("peer_left"); str(m, "reason") != "disconnected" {
		t.Fatalf("peer_left = %v", m)
	}
	t.Logf("stranger's node died: peer_left after %v", time.Since(start))
	b.send(map[string]any{"type": "queue", "mode": "text"})
	b.expect("queued")
}
