package matcher

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Matcher; zero values get the documented defaults.
type Options struct {
	InterestTimeout time.Duration // default 10s
	AvoidRepeat     time.Duration // 0 disables avoid-repeat
	Now             func() time.Time
	Rand            interface{ IntN(n int) int } // choices; default seeded from crypto/rand
	Codes           io.Reader                    // room code entropy; default crypto/rand
	Logger          *slog.Logger
	Registerer      prometheus.Registerer // nil: no metrics
}

// Matcher applies the pairing rules over a Store. Several Matchers may
// share one Store: Claim is what keeps them from double-matching.
type Matcher struct {
	store  Store
	notify Notifier
	opt    Options
	wake   chan struct{}

	passMu sync.Mutex // one pass at a time per Matcher; guards opt.Rand and made
	made   int

	matches *prometheus.CounterVec
	latency *prometheus.HistogramVec
	passes  prometheus.Counter
}

// New builds a Matcher. Call Run to pair in the background, or Pass to
// pair once.
func New(store Store, n Notifier, opt Options) *Matcher {
	if opt.InterestTimeout <= 0 {
		opt.InterestTimeout = 10 * time.Second
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Codes == nil {
		opt.Codes = crand.Reader
	}
	if opt.Rand == nil {
		var seed [16]byte
		_, _ = crand.Read(seed[:]) // crypto/rand.Read never fails on Linux
		opt.Rand = rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:])))
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	m := &Matcher{
		store: store, notify: n, opt: opt, wake: make(chan struct{}, 1),
		matches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_matches_total", Help: "Pairs matched, by mode.",
		}, []string{"mode"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "duet_match_latency_seconds",
			Help:    "Time from queue to match, per stranger, by mode.",
			Buckets: prometheus.ExponentialBucketsRange(0.001, 60, 16),
		}, []string{"mode"}),
		passes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duet_match_passes_total", Help: "Pairing passes run.",
		}),
	}
	for _, mode := range []string{ModeVideo, ModeText} {
		m.matches.WithLabelValues(mode)
		m.latency.WithLabelValues(mode)
	}
	if opt.Registerer != nil {
		for _, c := range []prometheus.Collector{m.matches, m.latency, m.passes} {
			if err := opt.Registerer.Register(c); err != nil {
				opt.Logger.Warn("matcher metrics not registered", "err", err)
			}
		}
	}
	return m
}

// Join queues t and wakes the pairing loop, so a match costs work, not a
// timer tick.
func (m *Matcher) Join(ctx context.Context, t Ticket) error {
	if !ValidMode(t.Mode) {
		return fmt.Errorf("matcher: invalid mode %q", t.Mode)
	}
	t.Interests = NormalizeInterests(t.Interests)
	if t.JoinedAt.IsZero() {
		t.JoinedAt = m.opt.Now()
	}
	if err := m.store.Add(ctx, t); err != nil {
		return fmt.Errorf("matcher: join %s: %w", t.Session, err)
	}
	m.poke()
	return nil
}

func (m *Matcher) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Leave takes a session out of the queue; false if it was not waiting
// (never joined, or already claimed by a match in flight).
func (m *Matcher) Leave(ctx context.Context, session string) (bool, error) {
	ok, err := m.store.Remove(ctx, session)
	if err != nil {
		return false, fmt.Errorf("matcher: leave %s: %w", session, err)
	}
	return ok, nil
}

// Counts returns how many wait in each mode (both keys always present).
func (m *Matcher) Counts(ctx context.Context) (map[string]int, error) {
	c, err := m.store.Counts(ctx)
	if err != nil {
		return nil, fmt.Errorf("matcher: counts: %w", err)
	}
	out := map[string]int{ModeVideo: c[ModeVideo], ModeText: c[ModeText]}
	return out, nil
}

// Run pairs until ctx ends: at once on every Join, when the earliest
// interest timeout among the waiting passes, and at least every second
// while anyone waits (a claim lost to another worker, a re-queue).
func (m *Matcher) Run(ctx context.Context) error {
	for {
		wait, err := m.pass(ctx)
		if err != nil && ctx.Err() == nil {
			m.opt.Logger.Error("pairing pass failed", "err", err)
			wait = time.Second
		}
		var timer <-chan time.Time
		var t *time.Timer
		if wait > 0 {
			t = time.NewTimer(wait)
			timer = t.C
		}
		select {
		case <-ctx.Done():
			if t != nil {
				t.Stop()
			}
			return ctx.Err()
		case <-m.wake:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
	}
}

// Pass runs one pairing pass over every mode and returns the number of
// matches made.
func (m *Matcher) Pass(ctx context.Context) (int, error) {
	before := m.count()
	_, err := m.pass(ctx)
	return m.count() - before, err
}

func (m *Matcher) count() int {
	m.passMu.Lock()
	defer m.passMu.Unlock()
	return m.made
}

// pass pairs every mode once; it returns how long until a pass could pair
// someone new by time alone (0: nobody waits).
func (m *Matcher) pass(ctx context.Context) (time.Duration, error) {
	m.passMu.Lock()
	defer m.passMu.Unlock()
	m.passes.Inc()
	var next time.Duration
	for _, mode := range []string{ModeVideo, ModeText} {
		wait, err := m.passMode(ctx, mode)
		if err != nil {
			return time.Second, err
		}
		if wait > 0 && (next == 0 || wait < next) {
			next = wait
		}
	}
	return next, nil
}

func (m *Matcher) passMode(ctx context.Context, mode string) (time.Duration, error) {
	tickets, err := m.store.Waiting(ctx, mode)
	if err != nil {
		return 0, fmt.Errorf("matcher: waiting %s: %w", mode, err)
	}
	if len(tickets) == 0 {
		return 0, nil
	}
	now := m.opt.Now()
	// A random visiting order: who gets served first is not who came first.
	for i := len(tickets) - 1; i > 0; i-- {
		j := m.opt.Rand.IntN(i + 1)
		tickets[i], tickets[j] = tickets[j], tickets[i]
	}
	taken := make(map[string]bool, len(tickets))
	for _, t := range tickets {
		if taken[t.Session] {
			continue
		}
		c, ok, err := m.choose(ctx, t, tickets, taken, now)
		if err != nil {
			return 0, err
		}
		if !ok {
			continue
		}
		taken[t.Session], taken[c.Session] = true, true
		if err := m.claim(ctx, mode, t, c, now); err != nil {
			return 0, err
		}
	}
	// Wake when the earliest interest timeout among those left passes; at
	// most a second, so claims lost to other workers are retried.
	wait := time.Second
	for _, t := range tickets {
		if taken[t.Session] || len(t.Interests) == 0 {
			continue
		}
		if d := t.JoinedAt.Add(m.opt.InterestTimeout).Sub(now); d > 0 && d < wait {
			wait = d
		}
	}
	return wait, nil
}

func (m *Matcher) claim(ctx context.Context, mode string, t, c Ticket, now time.Time) error {
	room, err := NewRoomCode(m.opt.Codes)
	if err != nil {
		return err
	}
	err = m.store.Claim(ctx, t.Session, c.Session, now.Add(m.opt.AvoidRepeat))
	if errors.Is(err, ErrNotWaiting) {
		return nil // one of them left, or another worker got there first
	}
	if err != nil {
		return fmt.Errorf("matcher: claim: %w", err)
	}
	a, b := t, c
	if m.opt.Rand.IntN(2) == 0 {
		a, b = c, t
	}
	match := Match{Room: room, Mode: mode, A: a, B: b, Common: common(a.Interests, b.Interests), At: now}
	m.made++
	m.matches.WithLabelValues(mode).Inc()
	for _, s := range []Ticket{a, b} {
		m.latency.WithLabelValues(mode).Observe(now.Sub(s.JoinedAt).Seconds())
	}
	m.notify.Matched(match)
	return nil
}

// choose picks t's partner: candidates are grouped by how many interests
// they share with t, the best group first, and drawn at random within a
// group. A pair that met recently is put aside and used only when both
// have waited out the interest timeout and nobody else is eligible.
func (m *Matcher) choose(ctx context.Context, t Ticket, all []Ticket, taken map[string]bool, now time.Time) (Ticket, bool, error) {
	expired := func(x Ticket) bool { return now.Sub(x.JoinedAt) >= m.opt.InterestTimeout }
	patient := func(x Ticket) bool { return len(x.Interests) == 0 || expired(x) }

	tiers := map[int][]Ticket{}
	for _, c := range all {
		if c.Session == t.Session || taken[c.Session] {
			continue
		}
		score := len(common(t.Interests, c.Interests))
		if score > 0 || (patient(t) && patient(c)) {
			tiers[score] = append(tiers[score], c)
		}
	}
	scores := slices.Sorted(maps.Keys(tiers))
	slices.Reverse(scores)
	var repeats []Ticket
	for _, score := range scores {
		pool := tiers[score]
		for len(pool) > 0 {
			i := m.opt.Rand.IntN(len(pool))
			c := pool[i]
			met := false
			if m.opt.AvoidRepeat > 0 {
				var err error
				if met, err = m.store.Met(ctx, t.Session, c.Session, now); err != nil {
					return Ticket{}, false, fmt.Errorf("matcher: met: %w", err)
				}
			}
			if !met {
				return c, true, nil
			}
			if expired(t) && expired(c) {
				repeats = append(repeats, c)
			}
			pool[i] = pool[len(pool)-1]
			pool = pool[:len(pool)-1]
		}
	}
	if len(repeats) > 0 {
		return repeats[m.opt.Rand.IntN(len(repeats))], true, nil
	}
	return Ticket{}, false, nil
}

// common returns the shared interests, sorted, never nil.
func common(a, b []string) []string {
	out := []string{}
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	slices.Sort(out)
	return out
}

// NormalizeInterests trims, lower-cases, drops empties and duplicates,
// keeping the first-seen order. The result is never nil.
func NormalizeInterests(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		s = strings.ToLower(strings.TrimSpace(s))
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// roomCodeBytes is 128 bits: far past the contract's 96.
const roomCodeBytes = 16

// NewRoomCode returns 22 URL-safe characters of fresh randomness from r.
func NewRoomCode(r io.Reader) (string, error) {
	var b [roomCodeBytes]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("matcher: room code: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}
