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
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Matcher; zero values get the documented defaults.
type Options struct {
	// InterestTimeout is how long an interest holds a stranger back from
	// strangers who share none; default 10s.
	InterestTimeout time.Duration
	// AvoidRepeat is how long a pair that met is kept apart; 0 disables it.
	AvoidRepeat time.Duration
	// Now is the clock; default time.Now. Tests inject a fake one.
	Now func() time.Time
	// Rand drives every choice (visiting order, partner, offerer). Default:
	// a PCG seeded from crypto/rand. It is used under the Matcher's pass
	// lock, so it must not be shared with another Matcher.
	Rand interface{ IntN(n int) int }
	// Codes is the room-code entropy; default crypto/rand.Reader. Anything
	// else is for tests: a guessable code lets strangers join a room.
	Codes io.Reader
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the matcher metrics; nil means none. Workers
	// sharing one Registerer share the series.
	Registerer prometheus.Registerer
	// PassTimeout bounds one pairing pass, every store call in it
	// included; default 2s (below the Redis pairing lease, so a stuck
	// pass gives up before another node takes over).
	PassTimeout time.Duration
}

// Matcher applies the pairing rules over a Store. Several Matchers may
// share one Store: Claim is what keeps them from double-matching.
type Matcher struct {
	store  Store
	notify Notifier
	opt    Options
	wake   chan struct{}

	passMu sync.Mutex // one pass at a time per Matcher; guards opt.Rand

	matches *prometheus.CounterVec
	latency *prometheus.HistogramVec
	passes  prometheus.Counter
	wakeups *prometheus.CounterVec
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
	if opt.PassTimeout <= 0 {
		opt.PassTimeout = 2 * time.Second
	}
	if opt.Codes == nil {
		opt.Codes = crand.Reader
	}
	if opt.Rand == nil {
		var seed [16]byte
		_, _ = crand.Read(seed[:]) // never fails: since Go 1.24 it crashes instead
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
		wakeups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_matcher_wakeups_total",
			Help: "What woke the pairing loop: a join on this node, the shared store (remote: a join on another node, or a change to look at again), or a timer.",
		}, []string{"source"}),
	}
	if opt.Registerer != nil {
		m.matches = register(opt, m.matches)
		m.latency = register(opt, m.latency)
		m.passes = register(opt, m.passes)
		m.wakeups = register(opt, m.wakeups)
	}
	// Both modes show up as zero from the start, so dashboards and rate()
	// need no special case for "no match yet".
	for _, mode := range []string{ModeVideo, ModeText} {
		m.matches.WithLabelValues(mode)
		m.latency.WithLabelValues(mode)
	}
	return m
}

// register registers c, or adopts the collector already registered under
// the same name, so several workers in one process add up in one series
// instead of failing or splitting.
func register[C prometheus.Collector](opt Options, c C) C {
	err := opt.Registerer.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	opt.Logger.Warn("matcher metrics not registered", "err", err)
	return c
}

// Join queues t and wakes the pairing loop, so a match costs work, not a
// timer tick.
//
// Join never waits for a pass: the Notifier may call it (to re-queue the
// live side of a stale match) from inside one.
func (m *Matcher) Join(ctx context.Context, t Ticket) error {
	if t.Session == "" {
		return errors.New("matcher: empty session")
	}
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

// Run pairs until ctx ends: at once on every Join, when a shared store
// says so (a join on another node, a claim lost), when the earliest
// interest timeout among the waiting passes, and at least every second
// while anyone waits (an avoid-repeat window running out). Each pass ends
// within PassTimeout. It returns ctx.Err() and leaves nothing running.
func (m *Matcher) Run(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var remote <-chan struct{}
	if w, ok := m.store.(Waker); ok {
		remote = w.Wakes(ctx)
	}
	for {
		started := m.opt.Now()
		made, wait, err := m.pass(ctx)
		if d := m.opt.Now().Sub(started); d > 250*time.Millisecond {
			m.opt.Logger.Warn("slow pairing pass", "duration", d, "matches", made)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			m.opt.Logger.Error("pairing pass failed", "err", err)
			wait = time.Second
		}
		var tick <-chan time.Time
		if wait > 0 {
			timer.Reset(wait) // Go 1.23+: Reset on a stopped or fired timer never delivers a stale tick
			tick = timer.C
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.wake:
			m.wakeups.WithLabelValues("join").Inc()
		case <-remote:
			m.wakeups.WithLabelValues("remote").Inc()
		case <-tick:
			m.wakeups.WithLabelValues("timer").Inc()
		}
		timer.Stop()
	}
}

// Pass runs one pairing pass over every mode and returns the number of
// matches made (and notified).
func (m *Matcher) Pass(ctx context.Context) (int, error) {
	made, _, err := m.pass(ctx)
	return made, err
}

// pass pairs every mode once. wait is how long until a pass could pair
// someone by time alone: 0 when nobody waits, never more than a second.
func (m *Matcher) pass(ctx context.Context) (made int, wait time.Duration, err error) {
	// One pass at a time per Matcher: opt.Rand is not safe for concurrent
	// use, and two passes of one worker would only race each other.
	m.passMu.Lock()
	defer m.passMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, m.opt.PassTimeout)
	defer cancel()
	m.passes.Inc()
	for _, mode := range []string{ModeVideo, ModeText} {
		n, w, err := m.passMode(ctx, mode)
		made += n
		if err != nil {
			return made, time.Second, err
		}
		if w > 0 && (wait == 0 || w < wait) {
			wait = w
		}
	}
	return made, wait, nil
}

func (m *Matcher) passMode(ctx context.Context, mode string) (made int, wait time.Duration, err error) {
	tickets, err := m.store.Waiting(ctx, mode)
	if errors.Is(err, ErrNotLeader) {
		// Look again in a second: the holder may have died.
		return 0, time.Second, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("matcher: waiting %s: %w", mode, err)
	}
	if len(tickets) == 0 {
		return 0, 0, nil
	}
	now := m.opt.Now()
	// Stores return snapshots in any order (a map's, say); a fixed order
	// first makes a pass a function of the seed, so tests can replay it.
	slices.SortFunc(tickets, func(a, b Ticket) int {
		if c := a.JoinedAt.Compare(b.JoinedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Session, b.Session)
	})
	// Then a random visiting order: who is served first is not who came
	// first, so nobody can game the queue by joining early.
	for i := len(tickets) - 1; i > 0; i-- {
		j := m.opt.Rand.IntN(i + 1)
		tickets[i], tickets[j] = tickets[j], tickets[i]
	}
	taken := make([]bool, len(tickets)) // by index: choose reads it n² times
	var sc scratch
	var pairs [][2]int
	for i := range tickets {
		if taken[i] {
			continue
		}
		j, ok, err := m.choose(ctx, i, tickets, taken, now, &sc)
		if err != nil {
			return made, 0, err
		}
		if !ok {
			continue
		}
		// Taken even if the claim is lost: the snapshot is stale for both,
		// and the next pass (at most a second away) sees the truth.
		taken[i], taken[j] = true, true
		pairs = append(pairs, [2]int{i, j})
	}
	made, err = m.claimAll(ctx, mode, tickets, pairs, now)
	if err != nil {
		return made, 0, err
	}
	// Wake when the earliest interest timeout among those left passes,
	// since that is when new pairs become eligible by time alone.
	wait = time.Second
	for i, t := range tickets {
		if taken[i] || len(t.Interests) == 0 {
			continue
		}
		if d := t.JoinedAt.Add(m.opt.InterestTimeout).Sub(now); d > 0 && d < wait {
			wait = d
		}
	}
	return made, wait, nil
}

// claimAll claims the pairs a pass chose (by index into tickets), in one
// batch when the store can, and notifies each pair it won.
func (m *Matcher) claimAll(ctx context.Context, mode string, tickets []Ticket, pairs [][2]int, now time.Time) (int, error) {
	if len(pairs) == 0 {
		return 0, nil
	}
	// Codes first: a pass that cannot make one must claim nobody, or the
	// claimed would wait for a room that never comes.
	rooms := make([]string, len(pairs))
	for k := range pairs {
		room, err := NewRoomCode(m.opt.Codes)
		if err != nil {
			return 0, err
		}
		rooms[k] = room
	}
	until := now.Add(m.opt.AvoidRepeat)
	errs := make([]error, len(pairs))
	if bc, ok := m.store.(BatchClaimer); ok {
		ids := make([][2]string, len(pairs))
		for k, p := range pairs {
			ids[k] = [2]string{tickets[p[0]].Session, tickets[p[1]].Session}
		}
		errs = bc.ClaimBatch(ctx, ids, now, until)
	} else {
		for k, p := range pairs {
			errs[k] = m.store.Claim(ctx, tickets[p[0]].Session, tickets[p[1]].Session, now, until)
		}
	}
	made := 0
	var firstErr error
	won := make([]Match, 0, len(pairs))
	defer func() { m.notifyAll(won) }()
	for k, p := range pairs {
		switch err := errs[k]; {
		case errors.Is(err, ErrNotWaiting):
			m.opt.Logger.Debug("claim lost", "mode", mode)
		case err != nil:
			if firstErr == nil {
				firstErr = fmt.Errorf("matcher: claim: %w", err)
			}
		default:
			won = append(won, m.pairOf(rooms[k], mode, tickets[p[0]], tickets[p[1]], now))
			made++
		}
	}
	return made, firstErr
}

// notifyAll hands the pairs of a pass on, in one call when the notifier
// takes batches (its lock is then taken once per pass, not per pair).
func (m *Matcher) notifyAll(won []Match) {
	if len(won) == 0 {
		return
	}
	if bn, ok := m.notify.(BatchNotifier); ok {
		bn.MatchedAll(won)
		return
	}
	for _, mt := range won {
		m.notify.Matched(mt)
	}
}

// pairOf turns a won claim into a Match.
func (m *Matcher) pairOf(room, mode string, t, c Ticket, now time.Time) Match {
	// The offerer is drawn, not "whoever was visited first", so neither
	// side's client code path is systematically favoured.
	a, b := t, c
	if m.opt.Rand.IntN(2) == 0 {
		a, b = c, t
	}
	match := Match{Room: room, Mode: mode, A: a, B: b, Common: common(a.Interests, b.Interests), At: now}
	m.matches.WithLabelValues(mode).Inc()
	for _, s := range []Ticket{a, b} {
		m.latency.WithLabelValues(mode).Observe(now.Sub(s.JoinedAt).Seconds())
	}
	return match
}

// scratch is choose's working memory, reused across one pass so that a
// pass over n strangers allocates O(n), not O(n²).
type scratch struct {
	cands   []cand
	pool    []int
	repeats []int
}

type cand struct{ idx, score int }

// choose picks the partner (an index into all) for all[ti]: candidates
// are grouped by how many interests they share with it, the best group
// first, and drawn at random within a group. A pair that met recently is
// put aside and used only when both have waited out the interest timeout
// and nobody else is eligible; Met is asked lazily, so a remote store sees
// about one query per pairing. A blocked pair is never a candidate. A
// shared language scores like a shared interest.
func (m *Matcher) choose(ctx context.Context, ti int, all []Ticket, taken []bool, now time.Time, sc *scratch) (int, bool, error) {
	expired := func(x Ticket) bool { return now.Sub(x.JoinedAt) >= m.opt.InterestTimeout }
	patient := func(x Ticket) bool { return (len(x.Interests) == 0 && x.Lang == "") || expired(x) }
	t := all[ti]
	tPatient := patient(t)

	sc.cands = sc.cands[:0]
	best := -1
	for j, c := range all {
		if j == ti || taken[j] || c.Session == t.Session {
			continue
		}
		if (len(t.Blocked) > 0 || len(c.Blocked) > 0) && blocked(t, c) {
			continue
		}
		score := shared(t.Interests, c.Interests) + sameLang(t, c)
		if score > 0 || (tPatient && patient(c)) {
			sc.cands = append(sc.cands, cand{j, score})
			best = max(best, score)
		}
	}
	sc.repeats = sc.repeats[:0] // the allowed repeats of one tier, the best that has any
	for score := best; score >= 0; score-- {
		sc.pool = sc.pool[:0]
		for _, c := range sc.cands {
			if c.score == score {
				sc.pool = append(sc.pool, c.idx)
			}
		}
		tierRepeats := len(sc.repeats) == 0
		for len(sc.pool) > 0 {
			k := m.opt.Rand.IntN(len(sc.pool))
			j := sc.pool[k]
			met := false
			if m.opt.AvoidRepeat > 0 {
				var err error
				if met, err = m.store.Met(ctx, t.Session, all[j].Session, now); err != nil {
					return 0, false, fmt.Errorf("matcher: met: %w", err)
				}
			}
			if !met {
				return j, true, nil
			}
			if tierRepeats && expired(t) && expired(all[j]) {
				sc.repeats = append(sc.repeats, j)
			}
			sc.pool[k] = sc.pool[len(sc.pool)-1]
			sc.pool = sc.pool[:len(sc.pool)-1]
		}
	}
	if len(sc.repeats) > 0 {
		return sc.repeats[m.opt.Rand.IntN(len(sc.repeats))], true, nil
	}
	return 0, false, nil
}

// shared counts common interests without allocating: choose calls it for
// every candidate of every ticket.
func shared(a, b []string) int {
	n := 0
	for _, x := range a {
		if slices.Contains(b, x) {
			n++
		}
	}
	return n
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
