package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/duetchat/duet/internal/testtool"
	"github.com/duetchat/duet/wire"
)

// faultClient reads one socket on its own goroutine and keeps what
// arrived, with arrival times, for the fault test's checks.
type faultClient struct {
	*wire.Client
	name string

	mu   sync.Mutex
	msgs []timedMsg
	err  error
}

type timedMsg struct {
	at time.Time
	m  *wire.Message
}

func dialFault(t *testing.T, addr, name string) *faultClient {
	t.Helper()
	ws, err := wire.Dial(context.Background(), "ws://"+addr+"/ws", wire.DialOptions{})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	c := &faultClient{Client: ws, name: name}
	t.Cleanup(func() { _ = ws.Close() })
	go func() {
		for {
			b, err := ws.NextFrame(context.Background()) // Close ends the wait
			now := time.Now()
			c.mu.Lock()
			if err != nil {
				c.err = err
				c.mu.Unlock()
				return
			}
			if m, err := wire.ParseMessage(b); err == nil {
				c.msgs = append(c.msgs, timedMsg{now, m})
			}
			c.mu.Unlock()
		}
	}()
	return c
}

// sent reports a send that failed (from any goroutine, so not fatal).
func (c *faultClient) sent(t *testing.T, err error) {
	if err != nil {
		t.Errorf("%s: %v", c.name, err)
	}
}

// since returns the messages from index i on.
func (c *faultClient) since(i int) []timedMsg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]timedMsg(nil), c.msgs[min(i, len(c.msgs)):]...)
}

// await waits for a message of type typ from index i on and returns its
// index; -1 after timeout.
func (c *faultClient) await(typ string, i int, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for k, m := range c.since(i) {
			if m.m.Type == typ {
				return i + k
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return -1
}

func (c *faultClient) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

// TestRedisFaultsOpenRoomsDoNotNotice: two duet processes on one real
// redis-server. A room on node 1 alone and a room spanning node 1 and
// node 2 chat at 20 messages a second while four clients on node 1 queue
// and cancel every 100-200 ms. Redis is SIGSTOPped for 6 s, later
// SIGKILLed and restarted empty, and the test runs on past the resume
// grace. The same-node room never stalls and loses nothing; the
// cross-node room lives on, every chat sent during the faults arrived
// once or was answered with error unavailable; every queue is answered
// within 2.5 s; both nodes are ready again soon after.
func TestRedisFaultsOpenRoomsDoNotNotice(t *testing.T) {
	redis := testtool.NewRedis(t)
	const grace = 5 * time.Second
	var nodes []*duet
	for i := range 2 {
		name := fmt.Sprintf("fault%d", i+1)
		nodes = append(nodes, startDuetAs(t, name, "DUET_STORE_BACKEND=redis",
			"DUET_STORE_REDIS_ADDRS="+redis.Addr, "DUET_STORE_REDIS_NODE="+name,
			"DUET_STORE_REDIS_KEY_PREFIX=fault:", "DUET_SIGNAL_RESUME_GRACE="+grace.String(),
			"DUET_HTTP_SHUTDOWN_GRACE=1s", "DUET_LIMITS_QUEUE_RATE=50", "DUET_LIMITS_QUEUE_BURST=50",
			"DUET_LIMITS_JOINS_PER_MINUTE=10000", "DUET_LIMITS_IP_JOINS_PER_MINUTE=10000",
			"DUET_LIMITS_CHAT_RATE=50", "DUET_LIMITS_CHAT_BURST=50", "DUET_MATCHER_AVOID_REPEAT=0s"))
	}
	pairUp := func(a, b *faultClient) string {
		t.Helper()
		ia, ib := a.count(), b.count()
		a.sent(t, a.Queue(wire.ModeText, "fault"))
		if a.await(wire.TypeQueued, ia, 5*time.Second) < 0 {
			t.Fatalf("%s not queued", a.name)
		}
		b.sent(t, b.Queue(wire.ModeText, "fault"))
		ka, kb := a.await(wire.TypeMatched, ia, 10*time.Second), b.await(wire.TypeMatched, ib, 10*time.Second)
		if ka < 0 || kb < 0 {
			t.Fatalf("%s and %s not matched", a.name, b.name)
		}
		room := a.since(ka)[0].m.Room
		if b.since(kb)[0].m.Room != room {
			t.Fatalf("%s and %s matched into different rooms", a.name, b.name)
		}
		return room
	}
	same := [2]*faultClient{dialFault(t, nodes[0].addr, "same-a"), dialFault(t, nodes[0].addr, "same-b")}
	sameRoom := pairUp(same[0], same[1])
	cross := [2]*faultClient{dialFault(t, nodes[0].addr, "cross-1"), dialFault(t, nodes[1].addr, "cross-2")}
	crossRoom := pairUp(cross[0], cross[1])
	start := [2][2]int{{same[0].count(), same[1].count()}, {cross[0].count(), cross[1].count()}}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Chat at 20 a second each way in both rooms; each chat names its
	// sender and number.
	sent := map[string]int{}
	var sentMu sync.Mutex
	for _, r := range []struct {
		room string
		c    [2]*faultClient
	}{{sameRoom, same}, {crossRoom, cross}} {
		for _, c := range r.c {
			wg.Add(1)
			go func(room string, c *faultClient) {
				defer wg.Done()
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for n := 0; ; n++ {
					select {
					case <-stop:
						sentMu.Lock()
						sent[c.name] = n
						sentMu.Unlock()
						return
					case <-tick.C:
						c.sent(t, c.Chat(room, c.name+"#"+strconv.Itoa(n)))
					}
				}
			}(r.room, c)
		}
	}
	// Churners: queue, wait for an answer, cancel (or leave a room they
	// fell into), every 100-200 ms; each queue's answer time is kept.
	var slowMu sync.Mutex
	var slowest time.Duration
	var unanswered int
	answers := map[string]int{}
	for i := range 4 {
		c := dialFault(t, nodes[0].addr, fmt.Sprintf("churn%d", i))
		wg.Add(1)
		go func(c *faultClient) {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				case <-time.After(time.Duration(100+(k*37)%100) * time.Millisecond):
				}
				i0 := c.count()
				asked := time.Now()
				c.sent(t, c.Queue(wire.ModeVideo))
				var answer *wire.Message
				for answer == nil && time.Since(asked) < 5*time.Second {
					for _, m := range c.since(i0) {
						switch m.m.Type {
						case wire.TypeQueued, wire.TypeMatched, wire.TypeError:
							if answer == nil {
								answer = m.m
								slowMu.Lock()
								answers[m.m.Type+" "+m.m.Code]++
								slowest = max(slowest, m.at.Sub(asked))
								slowMu.Unlock()
							}
						}
					}
					time.Sleep(5 * time.Millisecond)
				}
				if answer == nil {
					slowMu.Lock()
					unanswered++
					slowMu.Unlock()
				}
				// Back to idle: cancel, or leave when a match came (two
				// churners may meet); a match racing the cancel makes it
				// wrong_state, and then leave does it.
				i1 := c.count()
				matched := false
				for _, m := range c.since(i0) {
					matched = matched || m.m.Type == wire.TypeMatched
				}
				if matched {
					c.sent(t, c.Leave())
				} else {
					c.sent(t, c.Cancel())
				}
				if k := c.await(wire.TypeIdle, i1, 5*time.Second); k < 0 || func() bool {
					for _, m := range c.since(i1) {
						if m.m.Type == wire.TypeError && m.m.Code == wire.CodeWrongState {
							return true
						}
					}
					return false
				}() {
					c.sent(t, c.Leave())
					c.await(wire.TypeIdle, c.count(), 5*time.Second)
				}
			}
		}(c)
	}

	time.Sleep(2 * time.Second) // traffic before the faults, for contrast
	t.Log("Redis stalls for 6 s")
	redis.Stall(6 * time.Second)
	time.Sleep(3 * time.Second)
	t.Log("Redis is killed and restarted empty")
	redis.Kill()
	time.Sleep(500 * time.Millisecond)
	redis.Start()
	recovered := time.Now()
	for _, n := range nodes {
		deadline := recovered.Add(5 * time.Second)
		for {
			resp, err := http.Get("http://" + n.addr + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: /readyz not 200 within 5 s of Redis coming back", n.addr)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	time.Sleep(grace + 3*time.Second) // past the resume grace
	close(stop)
	wg.Wait()
	time.Sleep(time.Second) // the last chats in flight

	// The same-node room: nothing lost, in order, no gap over 250 ms.
	for i, c := range same {
		from := same[1-i].name
		want := 0
		var last time.Time
		var gap time.Duration
		for _, m := range c.since(start[0][i]) {
			switch m.m.Type {
			case wire.TypeChat:
				if text := m.m.Text; text != from+"#"+strconv.Itoa(want) {
					t.Fatalf("%s: got chat %q when %s#%d was due", c.name, text, from, want)
				}
				want++
				if !last.IsZero() {
					gap = max(gap, m.at.Sub(last))
				}
				last = m.at
			case wire.TypeTyping:
			default:
				t.Errorf("%s (same-node room) got %s", c.name, m.m.Raw)
			}
		}
		t.Logf("%s: %d chats, longest gap %v", c.name, want, gap)
		if want < sent[from]-2 { // the last one or two may still be on the wire
			t.Errorf("%s: %d of %d chats arrived", c.name, want, sent[from])
		}
		if gap >= 250*time.Millisecond {
			t.Errorf("%s: the same-node room stalled for %v", c.name, gap)
		}
	}
	// The cross-node room: alive, no peer_left, every reconnecting
	// followed by resumed, every chat delivered once or answered.
	for i, c := range cross {
		from, sender := cross[1-i].name, cross[1-i]
		got := map[int]int{}
		reconnecting := 0
		for _, m := range c.since(start[1][i]) {
			switch m.m.Type {
			case wire.TypeChat:
				var n int
				if _, err := fmt.Sscanf(m.m.Text, from+"#%d", &n); err != nil {
					t.Fatalf("%s: odd chat %s", c.name, m.m.Raw)
				}
				got[n]++
			case wire.TypePeerReconnecting:
				reconnecting++
			case wire.TypePeerResumed:
				reconnecting--
			case wire.TypePeerLeft:
				t.Errorf("%s: the cross-node room ended: %s", c.name, m.m.Raw)
			case wire.TypeError:
				if m.m.Code != wire.CodeUnavailable || m.m.Ref != wire.TypeChat {
					t.Errorf("%s: unexpected error %s", c.name, m.m.Raw)
				}
			}
		}
		if reconnecting != 0 {
			t.Errorf("%s: %d peer_reconnecting without peer_resumed", c.name, reconnecting)
		}
		refused := 0
		for _, m := range sender.since(start[1][1-i]) {
			if m.m.Type == wire.TypeError && m.m.Ref == wire.TypeChat {
				refused++
			}
		}
		lost := 0
		for n := 0; n < sent[from]-2; n++ {
			if got[n] > 1 {
				t.Errorf("%s: chat %s#%d arrived %d times", c.name, from, n, got[n])
			}
			if got[n] == 0 {
				lost++
			}
		}
		t.Logf("%s: %d of %d chats arrived, %d answered unavailable", c.name, len(got), sent[from], refused)
		if lost > refused {
			t.Errorf("%s: %d chats missing but only %d answered unavailable", c.name, lost, refused)
		}
	}
	// The cross-node room still carries chat both ways.
	for i, c := range cross {
		k := cross[1-i].count()
		c.sent(t, c.Chat(crossRoom, "after"))
		if cross[1-i].await(wire.TypeChat, k, 5*time.Second) < 0 {
			t.Errorf("%s -> %s: no chat after the faults", c.name, cross[1-i].name)
		}
	}
	t.Logf("churners: slowest answer to a queue %v, %d unanswered, answers %v", slowest, unanswered, answers)
	if unanswered > 0 || slowest > 2500*time.Millisecond {
		t.Errorf("queue answers: slowest %v, %d unanswered within 5 s; want all within 2.5 s", slowest, unanswered)
	}
}
