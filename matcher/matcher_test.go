package matcher

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// clock is a settable fake: every rule that depends on waiting is driven
// by moving it, never by sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// collector is the test Notifier.
type collector struct {
	mu sync.Mutex
	ms []Match
}

func (c *collector) Matched(m Match) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ms = append(c.ms, m)
}

func (c *collector) all() []Match {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ms)
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ms)
}

func seeded(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x5eed)) }

type rig struct {
	t     *testing.T
	m     *Matcher
	store *MemoryStore
	got   *collector
	clk   *clock
}

func newRig(t *testing.T, seed uint64, opt Options) *rig {
	t.Helper()
	r := &rig{t: t, store: NewMemoryStore(), got: &collector{}, clk: newClock()}
	opt.Now = r.clk.Now
	opt.Rand = seeded(seed)
	r.m = New(r.store, r.got, opt)
	return r
}

func (r *rig) join(session, mode string, interests ...string) {
	r.t.Helper()
	if err := r.m.Join(context.Background(), Ticket{Session: session, Mode: mode, Interests: interests}); err != nil {
		r.t.Fatalf("join %s: %v", session, err)
	}
}

func (r *rig) pass() int {
	r.t.Helper()
	n, err := r.m.Pass(context.Background())
	if err != nil {
		r.t.Fatalf("pass: %v", err)
	}
	return n
}

// pairs renders matches as sorted "x+y" strings, order-free.
func pairs(ms []Match) []string {
	out := []string{}
	for _, m := range ms {
		a, b := m.A.Session, m.B.Session
		if a > b {
			a, b = b, a
		}
		out = append(out, a+"+"+b)
	}
	slices.Sort(out)
	return out
}

func partnerOf(ms []Match, s string) string {
	for _, m := range ms {
		switch s {
		case m.A.Session:
			return m.B.Session
		case m.B.Session:
			return m.A.Session
		}
	}
	return ""
}

func checkMatch(t *testing.T, m Match) {
	t.Helper()
	if m.A.Session == m.B.Session {
		t.Errorf("self match: %+v", m)
	}
	if m.A.Mode != m.Mode || m.B.Mode != m.Mode {
		t.Errorf("cross-mode match: %s with %s in %s", m.A.Mode, m.B.Mode, m.Mode)
	}
	if m.Common == nil || !slices.IsSorted(m.Common) {
		t.Errorf("common %#v: want sorted, non-nil", m.Common)
	}
	if len(m.Room) != 22 {
		t.Errorf("room %q: want 22 chars", m.Room)
	}
}

type tk struct {
	session, mode string
	interests     []string
}

func TestPairingRules(t *testing.T) {
	v, x := ModeVideo, ModeText
	cases := []struct {
		name    string
		tickets []tk
		advance time.Duration // before the pass
		want    []string      // pairs, sorted
		waiting map[string]int
	}{
		{"lone ticket waits", []tk{{"a", v, nil}}, 0, []string{}, map[string]int{v: 1, x: 0}},
		{"modes never mix", []tk{{"a", v, nil}, {"b", x, nil}}, time.Minute, []string{}, map[string]int{v: 1, x: 1}},
		{"same mode pairs", []tk{{"a", v, nil}, {"b", x, nil}, {"c", v, nil}, {"d", x, nil}}, 0,
			[]string{"a+c", "b+d"}, map[string]int{v: 0, x: 0}},
		{"two without interests pair at once", []tk{{"a", x, nil}, {"b", x, nil}}, 0, []string{"a+b"}, nil},
		{"shared interest beats none", []tk{{"a", v, []string{"music"}}, {"b", v, []string{"music"}}, {"c", v, nil}}, 0,
			[]string{"a+b"}, map[string]int{v: 1}},
		{"interest holds back before timeout", []tk{{"a", v, []string{"music"}}, {"c", v, nil}}, 9 * time.Second,
			[]string{}, map[string]int{v: 2}},
		{"anyone after timeout", []tk{{"a", v, []string{"music"}}, {"c", v, nil}}, 10 * time.Second, []string{"a+c"}, nil},
		{"disjoint interests wait", []tk{{"a", v, []string{"music"}}, {"b", v, []string{"art"}}}, 0, []string{}, nil},
		{"disjoint interests after timeout", []tk{{"a", v, []string{"music"}}, {"b", v, []string{"art"}}}, 11 * time.Second,
			[]string{"a+b"}, nil},
		{"interests normalised", []tk{{"a", v, []string{" Music "}}, {"b", v, []string{"MUSIC", "art"}}}, 0, []string{"a+b"}, nil},
		{"most common tier wins", []tk{
			{"a", v, []string{"x", "y", "z"}}, {"b", v, []string{"x", "w"}},
			{"c", v, []string{"x", "y", "z"}}, {"d", v, []string{"x", "w"}},
		}, 0, []string{"a+c", "b+d"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The rules must hold whatever order the pass visits in.
			for seed := range uint64(50) {
				r := newRig(t, seed, Options{})
				for _, k := range tc.tickets {
					r.join(k.session, k.mode, k.interests...)
				}
				r.clk.Add(tc.advance)
				made := r.pass()
				ms := r.got.all()
				for _, m := range ms {
					checkMatch(t, m)
				}
				if got := pairs(ms); made != len(ms) || !slices.Equal(got, tc.want) {
					t.Fatalf("seed %d: made %d, pairs %v; want %v", seed, made, got, tc.want)
				}
				counts, err := r.m.Counts(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				for mode, n := range tc.waiting {
					if counts[mode] != n {
						t.Fatalf("seed %d: %d waiting in %s, want %d", seed, counts[mode], mode, n)
					}
				}
			}
		})
	}
}

func TestInterestTimeoutThenPair(t *testing.T) {
	r := newRig(t, 1, Options{InterestTimeout: 10 * time.Second})
	r.join("a", ModeVideo, "music")
	r.join("c", ModeVideo)
	if n := r.pass(); n != 0 {
		t.Fatalf("paired %d before the interest timeout", n)
	}
	r.clk.Add(10*time.Second - time.Nanosecond)
	if n := r.pass(); n != 0 {
		t.Fatalf("paired %d a nanosecond early", n)
	}
	r.clk.Add(time.Nanosecond)
	if n := r.pass(); n != 1 {
		t.Fatalf("made %d after the timeout, want 1", n)
	}
	m := r.got.all()[0]
	if len(m.Common) != 0 || m.Common == nil {
		t.Fatalf("common %#v, want empty non-nil", m.Common)
	}
	if !m.At.Equal(r.clk.Now()) {
		t.Fatalf("At %v, want %v", m.At, r.clk.Now())
	}
}

func TestMatchFields(t *testing.T) {
	offerers := map[string]int{}
	for seed := range uint64(100) {
		r := newRig(t, seed, Options{})
		r.join("a", ModeText, "go", "chess", "art")
		r.join("b", ModeText, "art", "go")
		r.pass()
		m := r.got.all()[0]
		checkMatch(t, m)
		if !slices.Equal(m.Common, []string{"art", "go"}) {
			t.Fatalf("common %v", m.Common)
		}
		offerers[m.A.Session]++
	}
	// The offerer is drawn, so both sides get the role.
	if offerers["a"] < 20 || offerers["b"] < 20 {
		t.Fatalf("offerer split %v, want both well represented", offerers)
	}
}

func TestAvoidRepeat(t *testing.T) {
	const window = time.Minute
	// meet pairs a and b, then puts them back with the given others.
	meet := func(t *testing.T, seed uint64, others ...string) *rig {
		t.Helper()
		r := newRig(t, seed, Options{InterestTimeout: 10 * time.Second, AvoidRepeat: window})
		r.join("a", ModeVideo)
		r.join("b", ModeVideo)
		if r.pass() != 1 {
			t.Fatal("first meeting failed")
		}
		r.got = &collector{}
		r.m.notify = r.got
		r.clk.Add(time.Second)
		r.join("a", ModeVideo)
		r.join("b", ModeVideo)
		for _, o := range others {
			r.join(o, ModeVideo)
		}
		return r
	}

	t.Run("never again while another is eligible", func(t *testing.T) {
		for _, wait := range []time.Duration{0, 11 * time.Second, window - 2*time.Second} {
			for seed := range uint64(100) {
				r := meet(t, seed, "d")
				r.clk.Add(wait)
				r.pass()
				for _, p := range pairs(r.got.all()) {
					if p == "a+b" {
						t.Fatalf("wait %v seed %d: a and b met again within the window", wait, seed)
					}
				}
				if r.got.len() != 1 {
					t.Fatalf("wait %v seed %d: %d matches, want 1", wait, seed, r.got.len())
				}
			}
		}
	})

	t.Run("only pair waits for the interest timeout", func(t *testing.T) {
		r := meet(t, 7)
		if n := r.pass(); n != 0 {
			t.Fatal("repeat pair matched before both waited out the interest timeout")
		}
		r.clk.Add(10 * time.Second)
		if n := r.pass(); n != 1 {
			t.Fatal("repeat pair not matched though nobody else waits and both waited out the timeout")
		}
	})

	t.Run("after the window they may meet", func(t *testing.T) {
		again := 0
		for seed := range uint64(100) {
			r := meet(t, seed, "d")
			r.clk.Add(window)
			r.pass()
			if slices.Contains(pairs(r.got.all()), "a+b") {
				again++
			}
		}
		// Three tickets, one pair: a+b is one of three pairs.
		if again < 10 || again > 70 {
			t.Fatalf("a+b met again in %d of 100 passes after the window; want about a third", again)
		}
	})

	t.Run("off means off", func(t *testing.T) {
		r := newRig(t, 3, Options{})
		for range 3 {
			r.join("a", ModeVideo)
			r.join("b", ModeVideo)
			if r.pass() != 1 {
				t.Fatal("repeat blocked with AvoidRepeat 0")
			}
		}
		if n := len(r.store.met); n != 0 {
			t.Fatalf("store keeps %d met pairs with avoid-repeat off", n)
		}
	})
}

// TestNotFIFO: the earliest stranger is not simply given the next one in
// line; over many seeds its partner spreads across the later joiners.
func TestNotFIFO(t *testing.T) {
	const later, trials = 11, 200
	partners := map[string]int{}
	for seed := range uint64(trials) {
		r := newRig(t, seed, Options{})
		r.join("early", ModeVideo)
		for i := range later {
			r.clk.Add(100 * time.Millisecond)
			r.join(fmt.Sprintf("p%02d", i), ModeVideo)
		}
		r.pass()
		p := partnerOf(r.got.all(), "early")
		if p == "" {
			t.Fatalf("seed %d: early stranger left unpaired among an even number", seed)
		}
		partners[p]++
	}
	most := 0
	for _, n := range partners {
		most = max(most, n)
	}
	if len(partners) < 5 || most*100 > trials*60 {
		t.Fatalf("partners of the earliest: %v; want at least 5 distinct, none over 60%%", partners)
	}
}

func TestJoinErrors(t *testing.T) {
	r := newRig(t, 1, Options{})
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		t    Ticket
		is   error
	}{
		{"bad mode", Ticket{Session: "a", Mode: "audio"}, nil},
		{"empty mode", Ticket{Session: "a"}, nil},
		{"empty session", Ticket{Mode: ModeVideo}, nil},
	} {
		if err := r.m.Join(ctx, tc.t); err == nil {
			t.Errorf("%s: joined", tc.name)
		}
	}
	r.join("a", ModeVideo)
	// One ticket per session across modes: a cannot also queue for text.
	for _, mode := range []string{ModeVideo, ModeText} {
		if err := r.m.Join(ctx, Ticket{Session: "a", Mode: mode}); !errors.Is(err, ErrAlreadyWaiting) {
			t.Errorf("second join in %s: %v, want ErrAlreadyWaiting", mode, err)
		}
	}
	got, _ := r.store.Waiting(ctx, ModeVideo)
	if len(got) != 1 || !got[0].JoinedAt.Equal(r.clk.Now()) || got[0].Interests == nil {
		t.Fatalf("stored %+v: want JoinedAt set to now and non-nil interests", got)
	}
	// A given JoinedAt is kept: a re-queued stranger keeps their place.
	then := r.clk.Now().Add(-time.Hour)
	if err := r.m.Join(ctx, Ticket{Session: "b", Mode: ModeText, JoinedAt: then}); err != nil {
		t.Fatal(err)
	}
	got, _ = r.store.Waiting(ctx, ModeText)
	if !got[0].JoinedAt.Equal(then) {
		t.Fatalf("JoinedAt %v, want %v", got[0].JoinedAt, then)
	}
}

func TestLeave(t *testing.T) {
	r := newRig(t, 1, Options{})
	ctx := context.Background()
	r.join("a", ModeVideo)
	r.join("b", ModeVideo)
	if ok, err := r.m.Leave(ctx, "b"); !ok || err != nil {
		t.Fatalf("leave: %v %v", ok, err)
	}
	if ok, _ := r.m.Leave(ctx, "b"); ok {
		t.Fatal("left twice")
	}
	if ok, _ := r.m.Leave(ctx, "nobody"); ok {
		t.Fatal("left without joining")
	}
	r.clk.Add(time.Minute)
	if n := r.pass(); n != 0 {
		t.Fatalf("matched %d after b left", n)
	}
	c, _ := r.m.Counts(ctx)
	if c[ModeVideo] != 1 || c[ModeText] != 0 || len(c) != 2 {
		t.Fatalf("counts %v", c)
	}
}

func TestCountsKeys(t *testing.T) {
	r := newRig(t, 1, Options{})
	c, err := r.m.Counts(context.Background())
	if err != nil || len(c) != 2 || c[ModeVideo] != 0 || c[ModeText] != 0 {
		t.Fatalf("counts %v %v", c, err)
	}
	if _, ok := c[ModeText]; !ok {
		t.Fatal("text key missing")
	}
}

// requeuer behaves like the signal hub with a stale match: it puts one
// side back from inside Matched, which must not deadlock.
type requeuer struct {
	m    *Matcher
	done bool
}

func (q *requeuer) Matched(m Match) {
	if !q.done {
		q.done = true
		_ = q.m.Join(context.Background(), m.A)
	}
}

func TestJoinFromNotifier(t *testing.T) {
	q := &requeuer{}
	q.m = New(NewMemoryStore(), q, Options{Rand: seeded(1)})
	ctx := context.Background()
	_ = q.m.Join(ctx, Ticket{Session: "a", Mode: ModeVideo})
	_ = q.m.Join(ctx, Ticket{Session: "b", Mode: ModeVideo})
	if n, err := q.m.Pass(ctx); n != 1 || err != nil {
		t.Fatalf("pass: %d %v", n, err)
	}
	if c, _ := q.m.Counts(ctx); c[ModeVideo] != 1 {
		t.Fatalf("re-queued side not waiting: %v", c)
	}
}

func TestNormalizeInterests(t *testing.T) {
	for _, tc := range []struct {
		in, want []string
	}{
		{nil, []string{}},
		{[]string{}, []string{}},
		{[]string{"", "  ", "\t"}, []string{}},
		{[]string{" Music", "music ", "ART", "art", "go"}, []string{"music", "art", "go"}},
		{[]string{"b", "a", "B"}, []string{"b", "a"}},
	} {
		got := NormalizeInterests(tc.in)
		if got == nil || !slices.Equal(got, tc.want) {
			t.Errorf("NormalizeInterests(%q) = %#v, want %q", tc.in, got, tc.want)
		}
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	clk := newClock()
	got := &collector{}
	store := NewMemoryStore()
	// Two workers on one registry share the series; a third on its own
	// registry is independent. None of this may panic or fail.
	m1 := New(store, got, Options{Now: clk.Now, Rand: seeded(1), Registerer: reg})
	m2 := New(store, got, Options{Now: clk.Now, Rand: seeded(2), Registerer: reg})
	_ = New(store, got, Options{Registerer: prometheus.NewRegistry()})
	ctx := context.Background()
	for i, m := range []*Matcher{m1, m2} {
		_ = m.Join(ctx, Ticket{Session: fmt.Sprint("a", i), Mode: ModeText})
		_ = m.Join(ctx, Ticket{Session: fmt.Sprint("b", i), Mode: ModeText})
		clk.Add(2 * time.Second)
		if n, err := m.Pass(ctx); n != 1 || err != nil {
			t.Fatalf("pass: %d %v", n, err)
		}
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range fams {
		seen[f.GetName()] = true
		for _, mt := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
				if strings.Contains(l.GetName(), "room") || strings.Contains(l.GetName(), "session") {
					t.Errorf("%s has label %s", f.GetName(), l.GetName())
				}
			}
			switch f.GetName() {
			case "duet_matches_total":
				if want := map[string]float64{ModeText: 2, ModeVideo: 0}[labels["mode"]]; mt.GetCounter().GetValue() != want {
					t.Errorf("matches{%s} = %v, want %v", labels["mode"], mt.GetCounter().GetValue(), want)
				}
			case "duet_match_passes_total":
				if mt.GetCounter().GetValue() != 2 {
					t.Errorf("passes = %v, want 2", mt.GetCounter().GetValue())
				}
			case "duet_match_latency_seconds":
				h := mt.GetHistogram()
				if labels["mode"] == ModeText && (h.GetSampleCount() != 4 || h.GetSampleSum() != 8) {
					t.Errorf("latency{text}: %d samples sum %v, want 4 and 8s", h.GetSampleCount(), h.GetSampleSum())
				}
			}
		}
	}
	for _, name := range []string{"duet_matches_total", "duet_match_passes_total", "duet_match_latency_seconds"} {
		if !seen[name] {
			t.Errorf("%s not registered", name)
		}
	}
}
