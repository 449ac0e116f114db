package matcher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/duetchat/duet/internal/testtool"
)

func sessionsOf(ts []Ticket) []string {
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		out = append(out, t.Session)
	}
	slices.Sort(out)
	return out
}

func add(seq int64, id string) change {
	return change{seq: seq, op: opAdd, t: Ticket{Session: id, Mode: ModeVideo, Node: "n"}}
}

func rm(seq int64, id string) change { return change{seq: seq, op: opRemove, ids: []string{id}} }

// liveView is a view built from an empty queue at change seq.
func liveView(t *testing.T, seq int64, now time.Time) *view {
	t.Helper()
	v := &view{}
	if !v.install(v.begin(), seq, nil, now) || !v.live() {
		t.Fatal("install of a fresh view failed")
	}
	return v
}

// Changes apply in their number's order whatever order they come in; a
// number that stays missing sends the view back to Redis after gapWait,
// not before.
func TestViewAppliesInOrder(t *testing.T) {
	now := time.Unix(1000, 0)
	v := liveView(t, 10, now)
	// 11 adds a, 12 removes it, 13 adds b: they come 13, 12, 11.
	for _, c := range []change{add(13, "b"), rm(12, "a")} {
		if self, others := v.change(c, now); self || others {
			t.Fatalf("change %d past a gap was applied", c.seq)
		}
	}
	if got := sessionsOf(v.tickets(ModeVideo)); len(got) != 0 {
		t.Fatalf("before 11 came: %v, want nothing applied", got)
	}
	// 11 applies, and releases 13's add: whoever applies it must wake
	// the pass.
	if self, others := v.change(add(11, "a"), now); !self || !others {
		t.Fatalf("filling the gap: self %v, others %v; want both", self, others)
	}
	if got := sessionsOf(v.tickets(ModeVideo)); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("after 11..13: %v, want [b]", got)
	}
	if v.needsSync(now.Add(time.Hour)) {
		t.Fatal("a filled gap still asks for a resync")
	}
	// Duplicates (two subscriptions, an announcement of a change the
	// view made itself) change nothing.
	v.change(add(11, "a"), now)
	if got := sessionsOf(v.tickets(ModeVideo)); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("after a repeat of 11: %v, want [b]", got)
	}
	// 14 never comes.
	v.change(add(15, "c"), now)
	if v.needsSync(now.Add(gapWait - time.Millisecond)) {
		t.Fatal("resync asked before gapWait")
	}
	if !v.needsSync(now.Add(gapWait)) {
		t.Fatal("a gap older than gapWait does not ask for a resync")
	}
	if v.live() {
		t.Fatal("the view is still used after giving up on a gap")
	}
}

// A counter that starts again means Redis lost the queue; a counter
// ahead of the view means an announcement was lost.
func TestViewCounterChecks(t *testing.T) {
	now := time.Unix(1000, 0)
	t.Run("restart seen in the counter", func(t *testing.T) {
		v := liveView(t, 40, now)
		v.observe(3, v.mark(), now)
		if v.live() {
			t.Fatal("a counter behind the view: the view was kept")
		}
	})
	t.Run("counter read before later changes", func(t *testing.T) {
		// Asked at 40; 41 and 42 came before the answer: no restart.
		v := liveView(t, 40, now)
		m := v.mark()
		v.change(add(41, "a"), now)
		v.change(add(42, "b"), now)
		v.observe(40, m, now)
		if !v.live() || v.needsSync(now.Add(time.Hour)) {
			t.Fatal("a counter read before the view's last changes was taken for a restart")
		}
	})
	t.Run("counter ahead", func(t *testing.T) {
		v := liveView(t, 40, now)
		v.observe(41, v.mark(), now)
		if v.needsSync(now.Add(gapWait / 2)) {
			t.Fatal("resync before gapWait")
		}
		v.change(add(41, "late"), now)
		if v.needsSync(now.Add(time.Hour)) {
			t.Fatal("the change came, the view still asks for a resync")
		}
		v.observe(43, v.mark(), now)
		if !v.needsSync(now.Add(gapWait)) {
			t.Fatal("42 and 43 never came: no resync")
		}
	})
}

// Changes that come while a resync is out are kept and applied over the
// snapshot (those it already has are skipped); a snapshot older than a
// later begin or an invalidation is thrown away.
func TestViewResyncHoldsChanges(t *testing.T) {
	now := time.Unix(1000, 0)
	v := &view{}
	e := v.begin()
	v.change(add(5, "old"), now)   // in the snapshot already
	v.change(add(7, "after"), now) // after it
	v.change(rm(6, "snap"), now)   // after it too
	if !v.install(e, 5, []Ticket{{Session: "old", Mode: ModeVideo}, {Session: "snap", Mode: ModeVideo}}, now) {
		t.Fatal("install refused")
	}
	if got := sessionsOf(v.tickets(ModeVideo)); !slices.Equal(got, []string{"after", "old"}) {
		t.Fatalf("after install: %v, want [after old]", got)
	}
	e = v.begin()
	v.invalidate()
	if v.install(e, 9, nil, now) || v.live() {
		t.Fatal("a snapshot from before an invalidation was installed")
	}
	// The first changes ever, late: older than the snapshot, skipped.
	e = v.begin()
	v.change(add(1, "first"), now)
	v.change(add(2, "second"), now)
	if !v.install(e, 2, []Ticket{{Session: "second", Mode: ModeVideo}}, now) || !v.live() {
		t.Fatal("late first changes spoiled the install")
	}
	if got := sessionsOf(v.tickets(ModeVideo)); !slices.Equal(got, []string{"second"}) {
		t.Fatalf("after install: %v, want [second]", got)
	}
}

// A claim that finds a ticket gone removes it from the view unless the
// view has it from a later change (it left and came back meanwhile).
func TestViewGoneKeepsNewerTickets(t *testing.T) {
	now := time.Unix(1000, 0)
	v := liveView(t, 0, now)
	v.change(add(1, "a"), now)
	v.change(add(2, "b"), now)
	v.change(rm(3, "b"), now)
	v.change(add(4, "b"), now)
	v.gone("a", 3) // gone at 3: stale
	v.gone("b", 3) // gone at 3, back at 4
	if got := sessionsOf(v.tickets(ModeVideo)); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("%v, want [b]", got)
	}
}

// redisNode is one node's store on a shared Redis, with its feed of
// announcements and its beat running, and a count of the commands its
// client sends.
type redisNode struct {
	*RedisStore
	sent  *atomic.Int64
	wakes <-chan struct{}
}

func startNode(t *testing.T, addr, prefix, name string, opt RedisOptions) *redisNode {
	t.Helper()
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}})
	t.Cleanup(func() { _ = rdb.Close() })
	sent := &atomic.Int64{}
	rdb.AddHook(countHook{sent})
	opt.Node = name
	s := NewRedisStore(rdb, prefix, opt)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	n := &redisNode{RedisStore: s, sent: sent, wakes: s.Wakes(ctx)}
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, 5*time.Second, name+" subscribed", s.feedLive)
	return n
}

// pairing makes n the pairing node with its view built.
func (n *redisNode) pairing(t *testing.T) {
	t.Helper()
	if _, err := n.Waiting(context.Background(), ModeVideo); err != nil {
		t.Fatalf("%s: first Waiting: %v", n.node, err)
	}
	if !n.view.live() {
		t.Fatalf("%s: no live view after its first Waiting", n.node)
	}
}

func (n *redisNode) sees(t *testing.T, within time.Duration, mode string, want ...string) {
	t.Helper()
	slices.Sort(want)
	var got []string
	deadline := time.Now().Add(within)
	for {
		w, err := n.Waiting(context.Background(), mode)
		got = sessionsOf(w)
		if err == nil && slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s waiting %s: %v (%v) after %v, want %v", n.node, mode, got, err, within, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The pairing node's view follows joins and leaves made on another
// node, and a pass then reads nothing from Redis: it asks only for what
// changed, and the changes come to it.
func TestViewFollowsOtherNodes(t *testing.T) {
	ctx := context.Background()
	addr := testtool.StartRedis(t)
	a := startNode(t, addr, "v:", "a", RedisOptions{})
	b := startNode(t, addr, "v:", "b", RedisOptions{})
	a.pairing(t)
	if _, err := b.Waiting(ctx, ModeVideo); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("b's Waiting: %v, want ErrNotLeader", err)
	}
	select {
	case <-a.wakes: // the one its subscription gave
	default:
	}
	for _, id := range []string{"x", "y"} {
		if err := b.Add(ctx, Ticket{Session: id, Mode: ModeVideo, Interests: []string{}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Add(ctx, Ticket{Session: "z", Mode: ModeText, Interests: []string{}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.wakes:
	case <-time.After(5 * time.Second):
		t.Fatal("a join on b did not wake a")
	}
	a.sees(t, 5*time.Second, ModeVideo, "x", "y")
	a.sees(t, 5*time.Second, ModeText, "z")
	w, _ := a.Waiting(ctx, ModeVideo)
	if w[0].Node != "b" {
		t.Fatalf("ticket node %q, want b", w[0].Node)
	}
	if ok, err := b.Remove(ctx, "x"); !ok || err != nil {
		t.Fatalf("remove: %v, %v", ok, err)
	}
	a.sees(t, 5*time.Second, ModeVideo, "y")

	// Passes now cost no command (the lease is renewed once a second, so
	// allow for one renewal in the window).
	before := a.sent.Load()
	for range 50 {
		if _, err := a.Waiting(ctx, ModeVideo); err != nil {
			t.Fatal(err)
		}
	}
	if n := a.sent.Load() - before; n > 4 {
		t.Fatalf("50 reads of the queue sent %d commands, want none but a lease renewal or two", n)
	}
	// b's own joins reach a; a's own need no announcement.
	if err := a.Add(ctx, Ticket{Session: "w", Mode: ModeVideo}); err != nil {
		t.Fatal(err)
	}
	a.sees(t, time.Second, ModeVideo, "w", "y")
}

// A change whose announcement never comes (lost on the way) is caught
// within a bounded time: by the next change's number (a gap) or, when
// nothing follows, by the counter the lease renewal reads.
func TestViewCatchesMissedAnnouncement(t *testing.T) {
	ctx := context.Background()
	addr := testtool.StartRedis(t)
	a := startNode(t, addr, "m:", "a", RedisOptions{})
	b := startNode(t, addr, "m:", "b", RedisOptions{})
	a.pairing(t)
	// lost adds session on b as b's add script would, without announcing.
	lost := func(session string) {
		t.Helper()
		keys := append([]string{b.key("seq"), b.key("changes"), b.key("node", "b")}, b.queueKeys(ModeVideo)...)
		raw := `{"Session":"` + session + `","Mode":"video","Interests":[],"Node":"b"}`
		if err := addScript.Run(ctx, b.rdb, keys, session, "b\n"+raw, 0, 0, 5000, time.Now().UnixNano()).Err(); err != nil {
			t.Fatal(err)
		}
	}
	bound := renewEvery + gapWait + time.Second // slack for a loaded machine
	t.Run("nothing follows", func(t *testing.T) {
		start := time.Now()
		lost("quiet")
		a.sees(t, bound, ModeVideo, "quiet")
		t.Logf("caught up in %v", time.Since(start))
	})
	t.Run("a change follows", func(t *testing.T) {
		start := time.Now()
		lost("first")
		if err := b.Add(ctx, Ticket{Session: "second", Mode: ModeVideo}); err != nil {
			t.Fatal(err)
		}
		a.sees(t, gapWait+time.Second, ModeVideo, "first", "quiet", "second")
		t.Logf("caught up in %v", time.Since(start))
	})
}

// Redis restarts empty: the pairing node drops its view, the nodes queue
// their waiting again (OnReset), and the view holds exactly those.
func TestViewAfterRedisRestart(t *testing.T) {
	ctx := context.Background()
	srv := testtool.NewRedis(t)
	resets := make(chan string, 2)
	onReset := func(node string) func() { return func() { resets <- node } }
	ttl := 600 * time.Millisecond // beats every 200 ms: the restart is noticed fast
	a := startNode(t, srv.Addr, "r:", "a", RedisOptions{HeartbeatTTL: ttl, OnReset: onReset("a")})
	b := startNode(t, srv.Addr, "r:", "b", RedisOptions{HeartbeatTTL: ttl, OnReset: onReset("b")})
	a.pairing(t)
	for i, id := range []string{"a1", "b1", "b2"} {
		s := []*redisNode{a, b, b}[i]
		if err := s.Add(ctx, Ticket{Session: id, Mode: ModeVideo}); err != nil {
			t.Fatal(err)
		}
	}
	a.sees(t, 5*time.Second, ModeVideo, "a1", "b1", "b2")

	srv.Kill()
	srv.Start()
	for range 2 {
		select {
		case <-resets:
		case <-time.After(10 * time.Second):
			t.Fatal("a node did not notice the restart")
		}
	}
	// b2 left while Redis was away: only a1 and b1 come back.
	for i, id := range []string{"a1", "b1"} {
		s := []*redisNode{a, b}[i]
		if err := s.Add(ctx, Ticket{Session: id, Mode: ModeVideo}); err != nil {
			t.Fatal(err)
		}
	}
	seen := func(n *redisNode) []string {
		w, err := n.Waiting(ctx, ModeVideo)
		if err != nil {
			return nil
		}
		return sessionsOf(w)
	}
	// Whichever node pairs now has exactly the queue Redis has.
	eventually(t, 10*time.Second, "the pairing node's view matches Redis", func() bool {
		return slices.Equal(seen(a), []string{"a1", "b1"}) || slices.Equal(seen(b), []string{"a1", "b1"})
	})
}

// A node that takes over pairing knows nothing of the pairs the last one
// matched: the claim refuses such a pair (inside its window) and the new
// node knows it from then on, so the rule holds across the handover.
func TestAvoidRepeatAcrossHandover(t *testing.T) {
	ctx := context.Background()
	addr := testtool.StartRedis(t)
	clk := newClock()
	first := startNode(t, addr, "h:", "first", RedisOptions{})
	first.pairing(t)
	for _, id := range []string{"x", "y"} {
		if err := first.Add(ctx, Ticket{Session: id, Mode: ModeVideo, JoinedAt: clk.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.Claim(ctx, "x", "y", clk.Now(), clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// The first node goes; the second takes the lease once it lapses.
	first.lostLease()
	if err := first.pass.Del(ctx, first.key("pairer")).Err(); err != nil {
		t.Fatal(err)
	}
	second := startNode(t, addr, "h:", "second", RedisOptions{})
	second.pairing(t)
	refused := 0 // rounds whose first pass tried x and y (and was refused)
	for seed := range uint64(20) {
		got := &collector{}
		m := New(second, got, Options{Now: clk.Now, Rand: seeded(seed), AvoidRepeat: time.Hour, InterestTimeout: time.Hour})
		z := fmt.Sprint("z", seed) // new each time: x and y have met every earlier z
		for _, id := range []string{"x", "y", z} {
			if err := second.Add(ctx, Ticket{Session: id, Mode: ModeVideo, JoinedAt: clk.Now(), Interests: []string{}}); err != nil {
				t.Fatal(err)
			}
		}
		for pass := range 3 {
			if _, err := m.Pass(ctx); err != nil {
				t.Fatal(err)
			}
			if got.len() > 0 {
				break
			}
			if pass == 0 {
				refused++
			}
		}
		ms := got.all()
		if len(ms) != 1 {
			t.Fatalf("seed %d: %d matches, want 1", seed, len(ms))
		}
		if p := pairs(ms)[0]; p == "x+y" {
			t.Fatalf("seed %d: x and y met again with z waiting", seed)
		}
		// Clear the queue for the next round; the pair that met stays met.
		for _, id := range []string{"x", "y", z} {
			if _, err := second.Remove(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		clk.Add(time.Millisecond)
	}
	// Tried once, refused, and known from then on.
	if refused != 1 {
		t.Fatalf("%d rounds were refused x and y, want exactly one", refused)
	}
}

// A claim checks the node of a ticket it cannot vouch for: a ticket of a
// node whose heartbeat lapsed is dropped, never matched.
func TestClaimDropsGhost(t *testing.T) {
	ctx := context.Background()
	addr := testtool.StartRedis(t)
	dropped := atomic.Int64{}
	a := startNode(t, addr, "g:", "a", RedisOptions{Orphans: func(n int) { dropped.Add(int64(n)) }})
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}})
	t.Cleanup(func() { _ = rdb.Close() })
	ghostNode := NewRedisStore(rdb, "g:", RedisOptions{Node: "ghost", HeartbeatTTL: time.Minute})
	if err := ghostNode.Add(ctx, Ticket{Session: "ghost1", Mode: ModeVideo}); err != nil {
		t.Fatal(err)
	}
	if err := a.Add(ctx, Ticket{Session: "live1", Mode: ModeVideo}); err != nil {
		t.Fatal(err)
	}
	a.pairing(t)
	a.sees(t, 5*time.Second, ModeVideo, "ghost1", "live1")
	// The ghost node dies; a cannot know yet (its heartbeat had a minute).
	if err := rdb.Del(ctx, ghostNode.key("node", "ghost")).Err(); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	delete(a.alive, "ghost")
	a.mu.Unlock()
	now := time.Now()
	if err := a.Claim(ctx, "live1", "ghost1", now, now.Add(time.Minute)); !errors.Is(err, ErrNotWaiting) {
		t.Fatalf("claim with a ghost: %v, want ErrNotWaiting", err)
	}
	a.sees(t, time.Second, ModeVideo, "live1")
	if c, _ := a.Counts(ctx); c[ModeVideo] != 1 {
		t.Fatalf("counts %v, want the live ticket only", c)
	}
	if dropped.Load() != 1 {
		t.Fatalf("orphans reported %d, want 1", dropped.Load())
	}
}

// Passes over two nodes with the matchers on both: the one that pairs
// matches everyone, whichever node they joined on, with a pass that
// sends only its claims.
func TestTwoNodesPairThroughTheView(t *testing.T) {
	ctx := context.Background()
	addr := testtool.StartRedis(t)
	got := &collector{}
	var ms []*Matcher
	for _, name := range []string{"p", "q"} {
		n := startNode(t, addr, "two:", name, RedisOptions{})
		m := New(n, got, Options{AvoidRepeat: time.Minute})
		ms = append(ms, m)
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- m.Run(runCtx) }()
		t.Cleanup(func() { stop(); <-done })
	}
	const n = 200
	for i := range n {
		if err := ms[i%2].Join(ctx, Ticket{Session: fmt.Sprint("s", i), Mode: ModeVideo}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 20*time.Second, "everyone matched", func() bool { return got.len() == n/2 })
	seen := map[string]bool{}
	for _, m := range got.all() {
		for _, s := range []string{m.A.Session, m.B.Session} {
			if seen[s] {
				t.Fatalf("%s matched twice", s)
			}
			seen[s] = true
		}
	}
}
