package matcher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func conformanceClaim(t *testing.T, newStore func(*testing.T) Store) {
	ctx := context.Background()
	now := newClock().Now()
	for _, tc := range []struct {
		name    string
		waiting []string
		a, b    string
		ok      bool
		left    int
	}{
		{"both waiting", []string{"a", "b", "c"}, "a", "b", true, 1},
		{"one gone", []string{"a", "c"}, "a", "b", false, 2},
		{"other gone", []string{"b", "c"}, "a", "b", false, 2},
		{"self", []string{"a", "b"}, "a", "a", false, 2},
		{"mode of the other", []string{"a", "x:b"}, "a", "c", false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			for _, w := range tc.waiting {
				mode := ModeVideo
				if len(w) > 2 && w[:2] == "x:" {
					mode, w = ModeText, w[2:]
				}
				if err := s.Add(ctx, Ticket{Session: w, Mode: mode, JoinedAt: now}); err != nil {
					t.Fatal(err)
				}
			}
			err := s.Claim(ctx, tc.a, tc.b, now, now.Add(time.Minute))
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrNotWaiting)) {
				t.Fatalf("claim: %v, want ok=%v", err, tc.ok)
			}
			c, _ := s.Counts(ctx)
			if c[ModeVideo]+c[ModeText] != tc.left {
				t.Fatalf("left %v, want %d", c, tc.left)
			}
			met, _ := s.Met(ctx, tc.b, tc.a, now)
			if met != tc.ok {
				t.Fatalf("met %v after claim ok=%v", met, tc.ok)
			}
		})
	}
}

func conformanceOneTicket(t *testing.T, newStore func(*testing.T) Store) {
	ctx := context.Background()
	s := newStore(t)
	if err := s.Add(ctx, Ticket{Session: "a", Mode: ModeVideo}); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ctx, Ticket{Session: "a", Mode: ModeText}); !errors.Is(err, ErrAlreadyWaiting) {
		t.Fatalf("second add: %v", err)
	}
	if ok, _ := s.Remove(ctx, "a"); !ok {
		t.Fatal("remove")
	}
	if err := s.Add(ctx, Ticket{Session: "a", Mode: ModeText}); err != nil {
		t.Fatalf("add after remove: %v", err)
	}
	if w, _ := s.Waiting(ctx, ModeText); len(w) != 1 || w[0].Session != "a" {
		t.Fatalf("waiting text: %v", w)
	}
	if w, _ := s.Waiting(ctx, ModeVideo); len(w) != 0 {
		t.Fatalf("waiting video: %v", w)
	}
}

func conformanceMetWindow(t *testing.T, newStore func(*testing.T) Store) {
	ctx := context.Background()
	clk := newClock()
	s := newStore(t)
	_ = s.Add(ctx, Ticket{Session: "a", Mode: ModeVideo, JoinedAt: clk.Now()})
	_ = s.Add(ctx, Ticket{Session: "b", Mode: ModeVideo, JoinedAt: clk.Now()})
	until := clk.Now().Add(time.Minute)
	if err := s.Claim(ctx, "a", "b", clk.Now(), until); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		a, b string
		at   time.Time
		want bool
	}{
		{"a", "b", clk.Now(), true},
		{"b", "a", clk.Now(), true}, // unordered
		{"a", "c", clk.Now(), false},
		{"a", "b", until.Add(-time.Nanosecond), true},
		{"a", "b", until, false},
		{"b", "a", until.Add(-time.Nanosecond), false}, // expired entries are dropped, not revived
	} {
		if got, _ := s.Met(ctx, tc.a, tc.b, tc.at); got != tc.want {
			t.Errorf("Met(%s,%s,%v) = %v, want %v", tc.a, tc.b, tc.at.Sub(clk.Now()), got, tc.want)
		}
	}
}

// TestMemoryStoreMetBounded: a busy node claims pairs forever; the met
// map must hold only the live windows (give or take the doubling slack),
// with avoid-repeat on and off.
func TestMemoryStoreMetBounded(t *testing.T) {
	ctx := context.Background()
	for _, window := range []time.Duration{0, time.Minute} {
		clk := newClock()
		s := NewMemoryStore()
		for i := range 100_000 {
			clk.Add(10 * time.Millisecond) // 6,000 claims per window
			a, b := fmt.Sprint("a", i), fmt.Sprint("b", i)
			_ = s.Add(ctx, Ticket{Session: a, Mode: ModeVideo, JoinedAt: clk.Now()})
			_ = s.Add(ctx, Ticket{Session: b, Mode: ModeVideo, JoinedAt: clk.Now()})
			if err := s.Claim(ctx, a, b, clk.Now(), clk.Now().Add(window)); err != nil {
				t.Fatal(err)
			}
		}
		if n, limit := len(s.met), 2*6_000+1024; n > limit {
			t.Errorf("window %v: %d met pairs kept, want at most %d", window, n, limit)
		}
	}
}

func conformanceCounts(t *testing.T, newStore func(*testing.T) Store) {
	c, _ := newStore(t).Counts(context.Background())
	if len(c) != 2 || c[ModeVideo] != 0 || c[ModeText] != 0 {
		t.Fatalf("counts %v", c)
	}
	if _, ok := c[ModeVideo]; !ok {
		t.Fatal("video key missing")
	}
}

// storeConformance is the one suite every Store backend passes.
func storeConformance(t *testing.T, newStore func(*testing.T) Store) {
	t.Run("claim", func(t *testing.T) { conformanceClaim(t, newStore) })
	t.Run("one ticket per session", func(t *testing.T) { conformanceOneTicket(t, newStore) })
	t.Run("met window", func(t *testing.T) { conformanceMetWindow(t, newStore) })
	t.Run("counts", func(t *testing.T) { conformanceCounts(t, newStore) })
	t.Run("concurrent claims", func(t *testing.T) { conformanceConcurrentClaims(t, newStore) })
	t.Run("blocks", func(t *testing.T) { conformanceBlocks(t, newStore) })
}

func TestMemoryStoreConformance(t *testing.T) {
	storeConformance(t, func(*testing.T) Store { return NewMemoryStore() })
}

// conformanceConcurrentClaims: many goroutines race to claim overlapping
// pairs; every session ends up in at most one claimed pair.
func conformanceConcurrentClaims(t *testing.T, newStore func(*testing.T) Store) {
	ctx := context.Background()
	s := newStore(t)
	now := newClock().Now()
	const n = 200
	for i := range n {
		if err := s.Add(ctx, Ticket{Session: fmt.Sprint("s", i), Mode: ModeVideo, JoinedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	claimed := map[string]int{}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				a, b := fmt.Sprint("s", i), fmt.Sprint("s", (i*7+w+1)%n)
				if err := s.Claim(ctx, a, b, now, now.Add(time.Minute)); err == nil {
					mu.Lock()
					claimed[a]++
					claimed[b]++
					mu.Unlock()
				} else if !errors.Is(err, ErrNotWaiting) {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for sess, c := range claimed {
		if c != 1 {
			t.Fatalf("%s claimed %d times", sess, c)
		}
	}
	counts, _ := s.Counts(ctx)
	if counts[ModeVideo]+len(claimed) != n {
		t.Fatalf("%d waiting + %d claimed != %d", counts[ModeVideo], len(claimed), n)
	}
}
