package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/duetchat/duet/internal/testtool"
	"github.com/duetchat/duet/wire"
)

// wsPeer is a protocol client for tests that span processes.
type wsPeer struct {
	*wire.Client
	t       *testing.T
	name    string
	welcome *wire.Message
}

func dialPeer(t *testing.T, addr, query, name string) *wsPeer {
	t.Helper()
	c, err := wire.Dial(context.Background(), "ws://"+addr+"/ws"+query, wire.DialOptions{})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	p := &wsPeer{Client: c, t: t, name: name}
	p.welcome = p.expect(wire.TypeWelcome)
	return p
}

// ok fails the test when a send failed.
func (p *wsPeer) ok(err error) {
	p.t.Helper()
	if err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
}

// expect reads until a message of type typ, skipping the types in skip;
// anything else fails the test.
func (p *wsPeer) expect(typ string, skip ...string) *wire.Message {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		m, err := p.Next(ctx)
		if err != nil {
			p.t.Fatalf("%s: waiting for %s: %v", p.name, typ, err)
		}
		if m.Type == typ {
			return m
		}
		if !slices.Contains(skip, m.Type) {
			p.t.Fatalf("%s: got %s while waiting for %s", p.name, m.Raw, typ)
		}
	}
}

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
	a.ok(a.Queue(wire.ModeVideo))
	a.expect(wire.TypeQueued)
	b.ok(b.Queue(wire.ModeVideo))
	b.expect(wire.TypeQueued)
	ma, mb := a.expect(wire.TypeMatched), b.expect(wire.TypeMatched)
	room := ma.Room
	if room == "" || mb.Room != room || ma.Role == mb.Role {
		t.Fatalf("matched: %s / %s", ma.Raw, mb.Raw)
	}
	off, ans := a, b
	if ma.Role == wire.RoleAnswerer {
		off, ans = b, a
	}
	for _, p := range []*wsPeer{a, b} {
		p.ok(p.Ready(room))
	}
	off.ok(off.Offer(room, "v=0 cross-node", ""))
	if m := ans.expect(wire.TypeOffer); m.SDP != "v=0 cross-node" {
		t.Fatalf("offer = %s", m.Raw)
	}
	ans.ok(ans.Answer(room, "v=0 answer", ""))
	if m := off.expect(wire.TypeAnswer); m.SDP != "v=0 answer" {
		t.Fatalf("answer = %s", m.Raw)
	}
	a.ok(a.Chat(room, "hi from node1"))
	if m := b.expect(wire.TypeChat); m.Text != "hi from node1" {
		t.Fatalf("chat = %s", m.Raw)
	}

	// node1 dies without a word; a comes back through node3.
	token, session, role := a.welcome.Token, a.welcome.Session, ma.Role
	nodes[0].proc.kill(t)
	a2 := dialPeer(t, nodes[2].addr, "?resume="+token, "a2")
	if a2.welcome.Session != session || !a2.welcome.Resumed {
		t.Fatalf("welcome on node3 = %s, want session %s resumed", a2.welcome.Raw, session)
	}
	if m := a2.expect(wire.TypeMatched); m.Room != room || m.Role != role {
		t.Fatalf("matched on node3 = %s, want room %s as %s", m.Raw, room, role)
	}
	// b may first hear that a's node went quiet.
	b.expect(wire.TypePeerResumed, wire.TypePeerReconnecting)
	a2.ok(a2.Ready(room))
	b.ok(b.Chat(room, "welcome back"))
	if m := a2.expect(wire.TypeChat); m.Text != "welcome back" {
		t.Fatalf("chat on node3 = %s", m.Raw)
	}
	a2.ok(a2.Offer(room, "v=0 restart", ""))
	if m := b.expect(wire.TypeOffer); m.SDP != "v=0 restart" {
		t.Fatalf("offer after resume = %s", m.Raw)
	}
	a2.ok(a2.Leave())
	a2.expect(wire.TypeIdle)
	if m := b.expect(wire.TypePeerLeft); m.Reason != wire.ReasonLeave {
		t.Fatalf("peer_left = %s", m.Raw)
	}

	// The survivors still match each other, across nodes.
	c := dialPeer(t, nodes[2].addr, "", "c")
	b.ok(b.Queue(wire.ModeText))
	b.expect(wire.TypeQueued)
	c.ok(c.Queue(wire.ModeText))
	c.expect(wire.TypeQueued)
	if mb, mc := b.expect(wire.TypeMatched), c.expect(wire.TypeMatched); mb.Room != mc.Room {
		t.Fatalf("b and c in different rooms: %s / %s", mb.Raw, mc.Raw)
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
	b.expect(wire.TypePeerReconnecting)
	if m := b.expect(wire.TypePeerLeft); m.Reason != wire.ReasonDisconnected {
		t.Fatalf("peer_left = %s", m.Raw)
	}
	t.Logf("stranger's node died: peer_left after %v", time.Since(start))
	b.ok(b.Queue(wire.ModeText))
	b.expect(wire.TypeQueued)
}
