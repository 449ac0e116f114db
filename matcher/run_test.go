package matcher

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/duetchat/duet/internal/testtool"
)

// eventually polls cond until it holds or the deadline passes: bounded
// waits on real goroutines, never a fixed sleep.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestRun(t *testing.T) {
	before := runtime.NumGoroutine()
	got := &collector{}
	m := New(NewMemoryStore(), got, Options{InterestTimeout: 150 * time.Millisecond, Rand: seeded(1)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()

	// Nobody waits at start, so Run has no timer: only Join's wake-up can
	// lead to this match.
	_ = m.Join(ctx, Ticket{Session: "a", Mode: ModeVideo})
	_ = m.Join(ctx, Ticket{Session: "b", Mode: ModeVideo})
	eventually(t, 5*time.Second, "a and b matched", func() bool { return got.len() == 1 })

	// No Join after these two: the interest deadline alone must fire a pass,
	// and sooner than the one-second fallback.
	start := time.Now()
	_ = m.Join(ctx, Ticket{Session: "c", Mode: ModeVideo, Interests: []string{"music"}})
	_ = m.Join(ctx, Ticket{Session: "d", Mode: ModeVideo})
	eventually(t, 5*time.Second, "c and d matched", func() bool { return got.len() == 2 })
	if took := time.Since(start); took < 150*time.Millisecond || took > 900*time.Millisecond {
		t.Errorf("c and d matched after %v; want just past the 150ms interest timeout", took)
	}

	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run returned %v, want context.Canceled", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not stop on cancel")
	}
	eventually(t, 2*time.Second, "goroutines back to baseline", func() bool { return runtime.NumGoroutine() <= before })
}

// TestLeaveRacesClaim: a stranger whose Leave succeeded is never matched,
// however the leave interleaves with passes.
func TestLeaveRacesClaim(t *testing.T) {
	got := &collector{}
	m := New(NewMemoryStore(), got, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()

	left := map[string]bool{}
	var mu sync.Mutex
	for round := range 20 {
		var wg sync.WaitGroup
		for i := range 50 {
			s := fmt.Sprintf("r%d-%d", round, i)
			_ = m.Join(ctx, Ticket{Session: s, Mode: ModeText})
			if i%2 == 0 {
				wg.Go(func() {
					if ok, _ := m.Leave(ctx, s); ok {
						mu.Lock()
						left[s] = true
						mu.Unlock()
					}
				})
			}
		}
		wg.Wait()
	}
	cancel()
	<-done
	for _, mt := range got.all() {
		if left[mt.A.Session] || left[mt.B.Session] {
			t.Fatalf("matched a stranger who had left: %s+%s", mt.A.Session, mt.B.Session)
		}
	}
}

// TestConcurrentWorkers: 1,000 strangers join at once while four workers
// share one store, then all press Next together, twice. Every round must
// pair each stranger exactly once.
//
// Avoid-repeat is on (with a short interest timeout) so the Met path runs
// under the race detector too; a leftover pair that already met is then
// allowed to meet again after 100ms instead of stalling the round.
func TestConcurrentWorkers(t *testing.T) {
	t.Run("memory", func(t *testing.T) { concurrentWorkers(t, NewMemoryStore()) })
	t.Run("redis", func(t *testing.T) {
		rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{testtool.StartRedis(t)}})
		t.Cleanup(func() { _ = rdb.Close() })
		concurrentWorkers(t, NewRedisStore(rdb, "duet:", RedisOptions{Node: "n1"}))
	})
	// Three nodes on one Redis, the four workers spread over them, and
	// every join made on the node of the worker it goes through.
	t.Run("redis-3-nodes", func(t *testing.T) {
		addr := testtool.StartRedis(t)
		var stores []Store
		for _, node := range []string{"n1", "n2", "n3"} {
			rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}})
			t.Cleanup(func() { _ = rdb.Close() })
			stores = append(stores, NewRedisStore(rdb, "duet:", RedisOptions{Node: node}))
		}
		concurrentWorkers(t, stores...)
	})
}

func concurrentWorkers(t *testing.T, stores ...Store) {
	const n, workers = 1000, 4
	started := time.Now()
	got := &collector{}
	ms := make([]*Matcher, workers)
	store := stores[0]
	for i := range ms {
		ms[i] = New(stores[i%len(stores)], got, Options{
			InterestTimeout: 100 * time.Millisecond,
			AvoidRepeat:     time.Minute,
			Rand:            seeded(uint64(i)),
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, workers+len(stores))
	for _, m := range ms {
		go func() { errs <- m.Run(ctx) }()
	}
	beating := 0
	for _, s := range stores {
		// A node beats while it runs; without it a slow round would see
		// its own tickets as a dead node's.
		if rs, ok := s.(*RedisStore); ok {
			beating++
			go func() { errs <- rs.Run(ctx) }()
		}
	}
	defer func() {
		cancel()
		for range workers + beating {
			if err := <-errs; !errors.Is(err, context.Canceled) {
				t.Errorf("worker stopped with %v", err)
			}
		}
	}()

	mode := func(i int) string { return []string{ModeVideo, ModeText}[i%2] }
	rooms := map[string]bool{}
	for round := range 3 {
		from := got.len()
		gate := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-gate
				var interests []string
				if k := i % 4; k > 0 {
					interests = []string{fmt.Sprint("topic", k)}
				}
				t := Ticket{Session: fmt.Sprintf("s%04d", i), Mode: mode(i), Interests: interests}
				if err := ms[i%workers].Join(ctx, t); err != nil {
					panic(err) // a failed join would only show up as a timeout below
				}
			})
		}
		close(gate)
		wg.Wait()
		eventually(t, 30*time.Second, fmt.Sprintf("round %d: %d matches", round, n/2), func() bool {
			return got.len()-from >= n/2
		})

		matches := got.all()[from:]
		if len(matches) != n/2 {
			t.Fatalf("round %d: %d matches, want %d", round, len(matches), n/2)
		}
		seen := map[string]int{}
		for _, mt := range matches {
			checkMatch(t, mt)
			if rooms[mt.Room] {
				t.Fatalf("round %d: room %s issued twice", round, mt.Room)
			}
			rooms[mt.Room] = true
			for _, s := range []Ticket{mt.A, mt.B} {
				seen[s.Session]++
				var i int
				_, _ = fmt.Sscanf(s.Session, "s%04d", &i)
				if mode(i) != mt.Mode {
					t.Fatalf("round %d: %s queued for %s, matched in %s", round, s.Session, mode(i), mt.Mode)
				}
				if rs, ok := stores[(i%workers)%len(stores)].(*RedisStore); ok && s.Node != rs.Node() {
					t.Fatalf("round %d: %s joined on %s, its ticket says node %q", round, s.Session, rs.Node(), s.Node)
				}
				if s.Session == mt.A.Session && s.Session == mt.B.Session {
					t.Fatalf("round %d: %s matched with itself", round, s.Session)
				}
			}
		}
		if len(seen) != n {
			t.Fatalf("round %d: %d strangers matched, want %d", round, len(seen), n)
		}
		for s, k := range seen {
			if k != 1 {
				t.Fatalf("round %d: %s in %d matches", round, s, k)
			}
		}
		c, _ := store.Counts(ctx)
		if c[ModeVideo] != 0 || c[ModeText] != 0 {
			t.Fatalf("round %d: still waiting %v", round, c)
		}
	}
	t.Logf("3 rounds of %d strangers over %d workers in %v", n, workers, time.Since(started))
}

var roomAlphabet = regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`)

func TestNewRoomCode(t *testing.T) {
	seen := make(map[string]bool, 10_000)
	for range 10_000 {
		code, err := NewRoomCode(crand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if !roomAlphabet.MatchString(code) {
			t.Fatalf("room code %q: want 22 URL-safe characters", code)
		}
		if raw, err := base64.RawURLEncoding.DecodeString(code); err != nil || len(raw) != 16 {
			t.Fatalf("room code %q decodes to %d bytes (%v), want 16", code, len(raw), err)
		}
		if seen[code] {
			t.Fatalf("room code %q repeated", code)
		}
		seen[code] = true
	}

	boom := errors.New("entropy gone")
	for name, r := range map[string]interface{ Read([]byte) (int, error) }{
		"failing": iotest.ErrReader(boom),
		"short":   bytes.NewReader(make([]byte, 15)),
		"empty":   bytes.NewReader(nil),
	} {
		code, err := NewRoomCode(r)
		if err == nil || code != "" {
			t.Errorf("%s reader: code %q, err %v; want an error and no code", name, code, err)
		}
	}
	if _, err := NewRoomCode(iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Errorf("error %v does not wrap the reader's", err)
	}
}

// TestPassWithoutEntropy: no room code, no claim: both stay waiting and
// nobody is told of a match.
func TestPassWithoutEntropy(t *testing.T) {
	r := newRig(t, 1, Options{Codes: iotest.ErrReader(errors.New("no entropy"))})
	r.join("a", ModeVideo)
	r.join("b", ModeVideo)
	n, err := r.m.Pass(context.Background())
	if err == nil || n != 0 || r.got.len() != 0 {
		t.Fatalf("pass: %d matches, %v; want an error and none", n, err)
	}
	if c, _ := r.m.Counts(context.Background()); c[ModeVideo] != 2 {
		t.Fatalf("counts %v: a failed pass must leave both waiting", c)
	}
}

func BenchmarkPass(b *testing.B) {
	topics := []string{"music", "games", "art", "films", "books", "sport", "code", "food"}
	for _, bc := range []struct {
		name      string
		interests func(i int) []string
	}{
		{"no-interests", func(int) []string { return nil }},
		{"interests", func(i int) []string {
			if i%3 == 0 {
				return nil
			}
			return []string{topics[i%len(topics)], topics[(i/3)%len(topics)]}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			const n = 1000
			clk := newClock()
			ctx := context.Background()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				store := NewMemoryStore()
				m := New(store, &collector{}, Options{Now: clk.Now, Rand: seeded(uint64(i)), AvoidRepeat: time.Minute})
				for j := range n {
					_ = m.Join(ctx, Ticket{Session: fmt.Sprint("s", j), Mode: ModeVideo, Interests: bc.interests(j)})
				}
				b.StartTimer()
				if _, err := m.Pass(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
