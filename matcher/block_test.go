package matcher

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestBlocked(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b Ticket
		want bool
	}{
		{"nothing", Ticket{Self: "A"}, Ticket{Self: "B"}, false},
		{"a blocks b", Ticket{Self: "A", Blocked: []string{"X", "B"}}, Ticket{Self: "B"}, true},
		{"b blocks a", Ticket{Self: "A"}, Ticket{Self: "B", Blocked: []string{"A"}}, true},
		{"someone else", Ticket{Self: "A", Blocked: []string{"C"}}, Ticket{Self: "B"}, false},
		// A ticket with no identity matches no block entry, not even "".
		{"empty self", Ticket{Blocked: []string{""}}, Ticket{}, false},
	} {
		if got := blocked(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: blocked = %v, want %v", tc.name, got, tc.want)
		}
		if got := blocked(tc.b, tc.a); got != tc.want {
			t.Errorf("%s (swapped): blocked = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestBlockedNeverPaired: unlike avoid-repeat, a block holds even when
// the two are alone and have waited out every timeout; a third comer is
// paired with one of them.
func TestBlockedNeverPaired(t *testing.T) {
	for _, who := range []string{"a", "b"} { // which side holds the block
		for seed := range uint64(50) {
			r := newRig(t, seed, Options{InterestTimeout: 10 * time.Second, AvoidRepeat: time.Minute})
			ta := Ticket{Session: "a", Mode: ModeVideo, Self: "A"}
			tb := Ticket{Session: "b", Mode: ModeVideo, Self: "B"}
			if who == "a" {
				ta.Blocked = []string{"B"}
			} else {
				tb.Blocked = []string{"A"}
			}
			for _, tk := range []Ticket{ta, tb} {
				if err := r.m.Join(context.Background(), tk); err != nil {
					t.Fatal(err)
				}
			}
			r.clk.Add(time.Hour)
			if n := r.pass(); n != 0 {
				t.Fatalf("%s blocks, seed %d: blocked pair matched", who, seed)
			}
			r.join("c", ModeVideo)
			if n := r.pass(); n != 1 {
				t.Fatalf("%s blocks, seed %d: %d matches with a third stranger, want 1", who, seed, n)
			}
			if p := pairs(r.got.all())[0]; p == "a+b" {
				t.Fatalf("seed %d: %s", seed, p)
			}
		}
	}
}

// TestLangPreferred: a language counts like a shared interest.
func TestLangPreferred(t *testing.T) {
	join := func(r *rig, s, lang string) {
		t.Helper()
		if err := r.m.Join(context.Background(), Ticket{Session: s, Mode: ModeText, Lang: lang}); err != nil {
			t.Fatal(err)
		}
	}
	for seed := range uint64(50) {
		r := newRig(t, seed, Options{InterestTimeout: 10 * time.Second})
		join(r, "de1", "de")
		join(r, "any", "")
		join(r, "de2", "de")
		join(r, "fr", "fr")
		if n := r.pass(); n != 1 {
			t.Fatalf("seed %d: %d matches, want 1 (de1+de2)", seed, n)
		}
		if got := pairs(r.got.all()); !slices.Equal(got, []string{"de1+de2"}) {
			t.Fatalf("seed %d: %v, want the two German speakers together", seed, got)
		}
		// The French speaker waits for another before taking anyone.
		r.clk.Add(10 * time.Second)
		if n := r.pass(); n != 1 || !slices.Contains(pairs(r.got.all()), "any+fr") {
			t.Fatalf("seed %d: after the timeout %v", seed, pairs(r.got.all()))
		}
	}
}

// conformanceBlocks: the block fields survive the store (a shared one
// carries them as JSON between nodes) and the matcher over it never
// pairs a blocked pair, round after round, while a third is paired.
func conformanceBlocks(t *testing.T, newStore func(*testing.T) Store) {
	ctx := context.Background()
	s := newStore(t)
	clk := newClock()
	got := &collector{}
	m := New(s, got, Options{Now: clk.Now, Rand: seeded(9), InterestTimeout: time.Second})
	blocks := make([]string, MaxBlocked)
	for i := range blocks {
		blocks[i] = fmt.Sprintf("id%03d", i)
	}
	blocks[MaxBlocked-1] = "B"
	for round := range 30 {
		got.ms = nil
		tickets := []Ticket{
			{Session: "a", Mode: ModeVideo, Self: "A", Blocked: blocks},
			{Session: "b", Mode: ModeVideo, Self: "B", Lang: "de"},
			{Session: fmt.Sprint("c", round), Mode: ModeVideo, Self: fmt.Sprint("C", round)},
		}
		for _, tk := range tickets {
			if err := m.Join(ctx, tk); err != nil {
				t.Fatal(err)
			}
		}
		w, err := s.Waiting(ctx, ModeVideo)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(w, func(x Ticket) bool { return x.Session == "a" })
		if i < 0 || w[i].Self != "A" || !slices.Equal(w[i].Blocked, blocks) {
			t.Fatalf("round %d: ticket a came back as %+v", round, w)
		}
		clk.Add(2 * time.Second)
		if _, err := m.Pass(ctx); err != nil {
			t.Fatal(err)
		}
		ms := got.all()
		if len(ms) != 1 || pairs(ms)[0] == "a+b" {
			t.Fatalf("round %d: matches %v, want one, not a+b", round, pairs(ms))
		}
		// Whoever is left goes, so the next round starts clean.
		for _, s2 := range []string{"a", "b"} {
			if _, err := m.Leave(ctx, s2); err != nil {
				t.Fatal(err)
			}
		}
	}
}
