package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duetchat/duet/internal/testtool"
	"github.com/duetchat/duet/wire"
)

// TestNodeKilledUnderLoad: two duet processes on one Redis carry sixteen
// rooms (both strangers on node1, split, both on node2) while churners
// keep queueing and skipping on node2. node1 is SIGKILLed. Every client it
// held resumes on node2 in its room and role, every room talks again, the
// churners keep being matched, and once everyone leaves nobody is left in
// a room or a queue.
func TestNodeKilledUnderLoad(t *testing.T) {
	redis := testtool.StartRedis(t)
	env := []string{"DUET_STORE_BACKEND=redis", "DUET_STORE_REDIS_ADDRS=" + redis,
		"DUET_STORE_REDIS_KEY_PREFIX=kill:", "DUET_HTTP_SHUTDOWN_GRACE=1s", "DUET_SIGNAL_RESUME_GRACE=15s", "DUET_LOG_LEVEL=info",
		"DUET_MATCHER_AVOID_REPEAT=1s", "DUET_LIMITS_CONNECTIONS_PER_IP=1000", "DUET_LIMITS_CONNECT_BURST_PER_IP=1000",
		"DUET_LIMITS_SESSIONS_PER_IP=1000", "DUET_LIMITS_IP_MESSAGE_RATE=100000", "DUET_LIMITS_IP_MESSAGE_BURST=100000",
		"DUET_LIMITS_IP_JOINS_PER_MINUTE=100000", "DUET_LIMITS_JOINS_PER_MINUTE=100000",
		"DUET_LIMITS_QUEUE_RATE=1000", "DUET_LIMITS_QUEUE_BURST=1000"}
	node1 := startDuetAs(t, "kill-node1", append(env, "DUET_STORE_REDIS_NODE=node1")...)
	node2 := startDuetAs(t, "kill-node2", append(env, "DUET_STORE_REDIS_NODE=node2")...)
	on := func(i int) *duet { return []*duet{node1, node2}[i] }

	type room struct {
		code   string
		peers  [2]*wsPeer
		nodes  [2]int
		roles  [2]string
		tokens [2]string
	}
	var rooms []*room
	for i := range 16 {
		r := &room{nodes: [2]int{(i / 4) % 2, (i / 8) % 2}}
		if i%4 == 1 {
			r.nodes = [2]int{0, 1}
		}
		for k := range 2 {
			p := dialPeer(t, on(r.nodes[k]).addr, "", fmt.Sprintf("room%d-%d", i, k))
			p.ok(p.Queue(wire.ModeText))
			p.expect(wire.TypeQueued)
			r.peers[k], r.tokens[k] = p, p.welcome.Token
		}
		for k := range 2 {
			m := r.peers[k].expect(wire.TypeMatched)
			r.code, r.roles[k] = m.Room, m.Role
		}
		rooms = append(rooms, r)
	}

	// Churners on node2: queue, get matched, skip, for as long as the test runs.
	quit := make(chan struct{})
	var matches atomic.Int64
	var wg sync.WaitGroup
	churnErr := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			churnErr <- churn(node2.addr, fmt.Sprint("churner", i), quit, &matches)
		}()
	}
	before := matches.Load()
	for before == matches.Load() {
		time.Sleep(20 * time.Millisecond) // the churners are matching
	}

	node1.proc.kill(t)
	killedAt := matches.Load()

	// Every client of node1 comes back through node2.
	for _, r := range rooms {
		for k := range 2 {
			if r.nodes[k] != 0 {
				continue
			}
			old := r.peers[k]
			p := dialPeer(t, node2.addr, "?resume="+r.tokens[k], old.name+"'")
			if p.welcome.Session != old.welcome.Session {
				t.Fatalf("%s resumed as a new session", old.name)
			}
			m := p.expect(wire.TypeMatched)
			if m.Room != r.code || m.Role != r.roles[k] {
				t.Fatalf("%s: matched %s, want room %s as %s", p.name, m.Raw, r.code, r.roles[k])
			}
			r.peers[k] = p
		}
	}
	// Every room talks both ways again.
	for _, r := range rooms {
		for k := range 2 {
			text := fmt.Sprintf("%s after the crash", r.peers[k].name)
			r.peers[k].ok(r.peers[k].Chat(r.code, text))
			if m := r.peers[1-k].expect(wire.TypeChat, wire.TypePeerReconnecting, wire.TypePeerResumed); m.Text != text {
				t.Fatalf("%s got %s", r.peers[1-k].name, m.Raw)
			}
		}
	}
	// node1 may have held the pairing lease: node2 takes over when it lapses.
	deadline := time.Now().Add(15 * time.Second)
	for matches.Load() == killedAt && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	close(quit)
	wg.Wait()
	close(churnErr)
	for err := range churnErr {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("churners: %d matches, %d after node1 died", matches.Load(), matches.Load()-killedAt)
	if matches.Load() == killedAt {
		t.Fatal("no churner was matched after node1 died")
	}

	// Everyone leaves: no room and no ticket may be left anywhere.
	for _, r := range rooms {
		for k := range 2 {
			r.peers[k].ok(r.peers[k].Leave())
		}
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		st := stats(t, node2.addr)
		w, _ := st["waiting"].(map[string]any)
		if st["rooms"] == 0.0 && w["text"] == 0.0 && w["video"] == 0.0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind after everyone left: %v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func stats(t *testing.T, addr string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(httpGet(t, "http://"+addr+"/api/stats", ""), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// churn queues, waits to be matched, skips, until quit closes; then it
// leaves and ends its session with a close frame.
func churn(addr, name string, quit <-chan struct{}, matches *atomic.Int64) error {
	c, err := wire.Dial(context.Background(), "ws://"+addr+"/ws", wire.DialOptions{})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer c.Close()
	msgs := make(chan *wire.Message)
	readErr := make(chan error, 1)
	go func() {
		for {
			m, err := c.Next(context.Background()) // Close ends the wait
			if err != nil {
				readErr <- err
				return
			}
			select {
			case msgs <- m:
			case <-quit:
				return
			}
		}
	}()
	if err := c.Queue(wire.ModeVideo); err != nil {
		return err
	}
	for {
		select {
		case <-quit:
			_ = c.Leave()
			return c.CloseNormally()
		case err := <-readErr:
			return fmt.Errorf("%s: %w", name, err)
		case <-time.After(20 * time.Second):
			return fmt.Errorf("%s: nothing from the node for 20 s", name)
		case m := <-msgs:
			switch m.Type {
			case wire.TypeMatched:
				matches.Add(1)
				if err := c.Skip(); err != nil {
					return err
				}
			case wire.TypePeerLeft:
				if err := c.Skip(); err != nil {
					return err
				}
			case wire.TypeError:
				return fmt.Errorf("%s: %s", name, m.Raw)
			}
		}
	}
}
