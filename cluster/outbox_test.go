package cluster

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/duetchat/duet/internal/testtool"
	"github.com/duetchat/duet/signal"
)

// Envelopes sent while Redis stalls (SIGSTOP) and while it is killed and
// restarted empty arrive once each and in order when it is back: none is
// lost, none doubled by the retries.
func TestBusSurvivesRedisFaults(t *testing.T) {
	r := testtool.NewRedis(t)
	client := func() redis.UniversalClient {
		rdb := redis.NewUniversalClient(&redis.UniversalOptions{
			Addrs: []string{r.Addr}, DialTimeout: time.Second, ReadTimeout: time.Second,
			WriteTimeout: time.Second, MaxRetries: 1,
		})
		t.Cleanup(func() { _ = rdb.Close() })
		return rdb
	}
	var lostMu sync.Mutex
	var lost []signal.Envelope
	a := New(client(), Options{Node: "a", KeyPrefix: "t:", Alive: alwaysAlive, Hold: 20 * time.Second,
		Lost: func(e signal.Envelope) { lostMu.Lock(); lost = append(lost, e); lostMu.Unlock() }})
	b := New(client(), Options{Node: "b", KeyPrefix: "t:", Alive: alwaysAlive})
	runBus(t, a)
	inbox := runBus(t, b)

	sent := 0
	send := func(n int) {
		for range n {
			a.Publish("b", signal.Envelope{Type: "frame", Room: strconv.Itoa(sent)})
			sent++
		}
	}
	next := 0
	// receive reads until every envelope sent so far has arrived, each
	// exactly once and in order.
	receive := func(what string) {
		t.Helper()
		timeout := time.After(25 * time.Second)
		for next < sent {
			select {
			case e := <-inbox:
				if e.Room != strconv.Itoa(next) {
					t.Fatalf("%s: envelope %s arrived when %d was due", what, e.Room, next)
				}
				next++
			case <-timeout:
				t.Fatalf("%s: %d of %d envelopes arrived", what, next, sent)
			}
		}
		select {
		case e := <-inbox:
			t.Fatalf("%s: envelope %s arrived again", what, e.Room)
		case <-time.After(300 * time.Millisecond):
		}
	}
	// Before the first subscription settles, envelopes wait for it.
	send(10)
	receive("before the subscription")

	stalled := make(chan struct{})
	go func() { defer close(stalled); r.Stall(3 * time.Second) }()
	for i := 0; i < 40; i++ { // about 2 s of sending into the stall
		send(1)
		time.Sleep(50 * time.Millisecond)
	}
	<-stalled
	receive("after a 3 s stall")

	r.Kill()
	send(20)
	r.Start() // empty: nothing persisted
	send(20)
	receive("after a restart")

	lostMu.Lock()
	defer lostMu.Unlock()
	if len(lost) != 0 {
		t.Fatalf("%d envelopes given up on within the hold", len(lost))
	}
	if d := a.Dropped(); d != 0 {
		t.Fatalf("Dropped = %d", d)
	}
}

// An envelope nobody can receive is retried for the hold and then handed
// to Lost, once, and counted.
func TestBusGivesUpAfterTheHold(t *testing.T) {
	addr := testtool.StartRedis(t)
	rdb := newClient(t, addr)
	lost := make(chan signal.Envelope, 10)
	a := New(rdb, Options{Node: "a", KeyPrefix: "t:", Alive: alwaysAlive, Hold: 500 * time.Millisecond,
		Lost: func(e signal.Envelope) { lost <- e }})
	runBus(t, a)
	a.Publish("gone", signal.Envelope{Type: "frame", Room: "r1", To: "s1"})
	select {
	case e := <-lost:
		if e.Room != "r1" || e.To != "s1" {
			t.Fatalf("Lost got %+v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an undeliverable envelope was never given up on")
	}
	select {
	case e := <-lost:
		t.Fatalf("Lost called twice (%+v)", e)
	case <-time.After(600 * time.Millisecond):
	}
	if d := a.Dropped(); d != 1 {
		t.Fatalf("Dropped = %d, want 1", d)
	}
}

func TestSeenDropsRepeats(t *testing.T) {
	s := newSeen()
	for _, tt := range []struct {
		src   string
		seq   uint64
		first bool
	}{
		{"a@1", 1, true},
		{"a@1", 2, true},
		{"a@1", 1, false}, // a retry
		{"a@2", 1, true},  // a restarted sender starts again
		{"a@1", 4, true},  // a gap: 3 was given up on
		{"a@1", 3, true},  // ...or arrives late, still once
		{"a@1", 3, false}, //
		{"", 0, true},     // no sequence: always passes
		{"a@1", seenWindow + 10, true},
		{"a@1", 5, false}, // far below the window: long settled
	} {
		if got := s.first(tt.src, tt.seq); got != tt.first {
			t.Errorf("first(%q, %d) = %v, want %v", tt.src, tt.seq, got, tt.first)
		}
	}
}
