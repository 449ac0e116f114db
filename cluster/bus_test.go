package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/duetchat/duet/internal/testtool"
	"github.com/duetchat/duet/signal"
)

func alwaysAlive(context.Context, string) (bool, error) { return true, nil }

// runBus starts b delivering into a channel and stops it at cleanup.
func runBus(t *testing.T, b *RedisBus) <-chan signal.Envelope {
	t.Helper()
	got := make(chan signal.Envelope, 4096)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, func(e signal.Envelope) { got <- e }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})
	return got
}

// TestBus runs against a standalone Redis and a three-node Cluster: the
// envelopes one node sends another arrive all and in order, and resume
// records round-trip.
func TestBus(t *testing.T) {
	for _, tc := range []struct {
		name  string
		addrs func(t *testing.T) []string
	}{
		{"standalone", func(t *testing.T) []string { return []string{testtool.StartRedis(t)} }},
		{"cluster", func(t *testing.T) []string { return testtool.StartRedisCluster(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addrs := tc.addrs(t)
			client := func() redis.UniversalClient {
				rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs})
				t.Cleanup(func() { _ = rdb.Close() })
				return rdb
			}
			a := New(client(), Options{Node: "a", KeyPrefix: "t:", Alive: alwaysAlive})
			b := New(client(), Options{Node: "b", KeyPrefix: "t:", Alive: alwaysAlive})
			runBus(t, a)
			inbox := runBus(t, b)
			// A subscription is not there the instant Run starts: probe
			// until one envelope arrives, then count from there.
			deadline := time.Now().Add(10 * time.Second)
		probe:
			for {
				a.Publish("b", signal.Envelope{Type: "probe"})
				select {
				case <-inbox:
					break probe
				case <-time.After(100 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatal("no envelope reached b within 10s")
				}
			}
			// An envelope arrived, so b's inbox is subscribed: Ready says so
			// (on a Cluster too, where the check must reach the right shard).
			if err := b.Ready(context.Background()); err != nil {
				t.Fatalf("Ready: %v", err)
			}
			idle := New(client(), Options{Node: "idle", KeyPrefix: "t:", Alive: alwaysAlive})
			if err := idle.Ready(context.Background()); err == nil {
				t.Fatal("a bus that never ran says its inbox is subscribed")
			}
			const n = 2000
			for i := range n {
				a.Publish("b", signal.Envelope{Type: "frame", Room: fmt.Sprint(i)})
			}
			next := 0
			timeout := time.After(10 * time.Second)
			for next < n {
				select {
				case e := <-inbox:
					if e.Type == "probe" {
						continue
					}
					if e.Room != fmt.Sprint(next) {
						t.Fatalf("envelope %s arrived when %d was due", e.Room, next)
					}
					next++
				case <-timeout:
					t.Fatalf("%d of %d envelopes arrived", next, n)
				}
			}

			rec := signal.Record{ID: "s1", Token: "tok1", Node: "a", State: "room",
				Room: &signal.RoomRecord{Code: "r1", Mode: "video", Index: 1, PeerID: "s2", PeerNode: "b"}}
			a.Save(rec)
			ctx := context.Background()
			waitFor(t, func() bool { _, ok, _ := b.Load(ctx, "tok1"); return ok })
			got, _, err := b.Load(ctx, "tok1")
			if err != nil || got.ID != "s1" || got.Room == nil || got.Room.PeerNode != "b" || got.Room.Index != 1 {
				t.Fatalf("Load = %+v, %v", got, err)
			}
			a.Forget("tok1")
			waitFor(t, func() bool { _, ok, _ := b.Load(ctx, "tok1"); return !ok })
			if d := a.Dropped(); d != 0 {
				t.Fatalf("%d writes dropped", d)
			}
		})
	}
}

// newClient is a client of the Redis at addr, closed when t ends.
func newClient(t *testing.T, addr string) redis.UniversalClient {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBusQueueFull: a full queue drops and counts instead of blocking the
// caller (the hub calls with its lock held).
func TestBusQueueFull(t *testing.T) {
	b := New(redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:1"}}),
		Options{Node: "a", Alive: alwaysAlive, Queue: 4})
	for range 10 {
		b.Publish("b", signal.Envelope{Type: "frame"})
	}
	if d := b.Dropped(); d != 6 {
		t.Fatalf("Dropped = %d, want 6", d)
	}
}

// TestBusReadsItsInjectedClock: envelope times come from Options.Now: a
// receiver whose clock runs an hour ahead measures an hour of lag.
func TestBusReadsItsInjectedClock(t *testing.T) {
	addr := testtool.StartRedis(t)
	lags := make(chan time.Duration, 64)
	a := New(newClient(t, addr), Options{Node: "a", KeyPrefix: "c:", Alive: alwaysAlive})
	b := New(newClient(t, addr), Options{Node: "b", KeyPrefix: "c:", Alive: alwaysAlive,
		Now: func() time.Time { return time.Now().Add(time.Hour) },
		Lag: func(d time.Duration) {
			select {
			case lags <- d:
			default:
			}
		}})
	runBus(t, a)
	inbox := runBus(t, b)
	deadline := time.After(10 * time.Second)
	for {
		a.Publish("b", signal.Envelope{Type: "probe"})
		select {
		case <-inbox:
			if d := <-lags; d < 59*time.Minute || d > 61*time.Minute {
				t.Fatalf("lag on a clock an hour ahead = %v, want about an hour", d)
			}
			return
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatal("no envelope reached b within 10s")
		}
	}
}
