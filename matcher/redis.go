package matcher

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisStore keeps the queues in Redis so several nodes share them. Every
// key carries one hash tag, so the multi-key scripts (redis_scripts.go) run in one slot
// on a Cluster too; each script is one atomic step, which is what keeps
// matcher workers on different nodes from claiming the same stranger.
//
// One node pairs at a time: the holder of the pairing lease. It keeps
// the queue in memory (view) and learns what changed from the changes
// themselves - its own from their replies, the other nodes' from the
// announcements their scripts publish - so a pass reads nothing from
// Redis; its claims are the only round trip. The view may be stale for a
// moment, never wrong in effect: a claim checks Redis, so a stale view
// costs a failed claim, not a double match; and a change the view missed
// is caught by its number (see view) and repaired by reading the whole
// queue again.
//
// Presence: every ticket names the node that queued it, and each node
// keeps a heartbeat key alive (Run). A ticket whose node's heartbeat has
// lapsed - the node died without cleaning up - is dropped (by the next
// read of the queue, or by the pairing node within a second), and a claim
// checks the node of any ticket it does not know to be alive, so a ghost
// is never matched.
//
// Every round trip carries its caller's deadline (a pass's included); a
// client made with ContextTimeoutEnabled lets it bound the socket reads,
// otherwise the client's own ReadTimeout does.
//
// Nodes of the version before this layout (one hash per field, the whole
// queue read per pass) use other keys: during a rolling upgrade each
// version pairs its own joins.
type RedisStore struct {
	rdb     redis.UniversalClient
	pass    redis.UniversalClient // the pass: reads, claims, the lease
	prefix  string                // "duet:{q}:" - the braces are the Cluster hash tag
	node    string
	ttl     time.Duration
	orphans func(n int) // called with the number of ghosts dropped
	lag     func(d time.Duration)
	onReset func()
	// now and afterFunc: the injected clock and timers (RedisOptions).
	now       func() time.Time
	afterFunc func(time.Duration, func())
	beaten    atomic.Bool
	nodeAt    atomic.Int64 // unix ns of the last write of this node's key
	adds      *batcher     // joins arriving together share one pipeline
	gapSet    atomic.Bool  // a timer is out for the view's gap

	view *view
	memo *pairMemo

	mu      sync.Mutex
	holder  bool                 // holds the pairing lease, as far as this node knows
	leaseAt time.Time            // when the write that took or kept it was sent
	tried   time.Time            // the last try to take it
	alive   map[string]time.Time // other nodes: heartbeat sure to last until
	feeds   int                  // confirmed subscriptions to the announcements
	wakers  map[chan struct{}]struct{}
}

// RedisOptions tune a RedisStore.
type RedisOptions struct {
	// Node names this process; tickets it adds carry it. Required.
	Node string
	// HeartbeatTTL is how long a node's tickets outlive its last beat
	// (default 5s); Run beats every third of it.
	HeartbeatTTL time.Duration
	// Orphans, if set, is told how many ghost tickets were dropped.
	Orphans func(n int)
	// PubSubLag, if set, gets the publish-to-receive delay of each
	// announcement from another node (across nodes it includes their
	// clock difference).
	PubSubLag func(d time.Duration)
	// OnReset, if set, is called when a beat finds this node's heartbeat
	// gone although an earlier one landed: Redis restarted empty (or was
	// away past the TTL), so this node's waiting tickets must be re-added.
	OnReset func()
	// PassClient, if set, carries the pairing pass (reads, claims, the
	// lease) so that it never queues for a connection behind a burst of
	// joins.
	PassClient redis.UniversalClient
	// Now is the store's clock (default time.Now) and AfterFunc its
	// timers (default time.AfterFunc): lease ages, announcement times and
	// lag, the view's sync and gap deadlines all read them.
	Now       func() time.Time
	AfterFunc func(d time.Duration, f func())
}

// NewRedisStore uses rdb with keys under keyPrefix.
func NewRedisStore(rdb redis.UniversalClient, keyPrefix string, opt RedisOptions) *RedisStore {
	if opt.HeartbeatTTL <= 0 {
		opt.HeartbeatTTL = 5 * time.Second
	}
	if opt.Orphans == nil {
		opt.Orphans = func(int) {}
	}
	if opt.PubSubLag == nil {
		opt.PubSubLag = func(time.Duration) {}
	}
	if opt.OnReset == nil {
		opt.OnReset = func() {}
	}
	if opt.PassClient == nil {
		opt.PassClient = rdb
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.AfterFunc == nil {
		opt.AfterFunc = func(d time.Duration, f func()) { time.AfterFunc(d, f) }
	}
	r := &RedisStore{rdb: rdb, pass: opt.PassClient, prefix: keyPrefix + "{q}:", node: opt.Node, ttl: opt.HeartbeatTTL,
		orphans: opt.Orphans, lag: opt.PubSubLag, onReset: opt.OnReset,
		now: opt.Now, afterFunc: opt.AfterFunc,
		adds: newBatcher(rdb, addScript, maxAddBatch, opt.Now),
		view: &view{}, memo: newPairMemo(),
		alive: map[string]time.Time{}, wakers: map[chan struct{}]struct{}{}}
	r.view.gapTimer = r.armGap
	return r
}

func (r *RedisStore) key(parts ...string) string {
	return r.prefix + strings.Join(parts, ":")
}

// queueKey is one mode's queue: a hash of session -> node "\n" ticket JSON.
func (r *RedisStore) queueKey(mode string) string { return r.key("wait", mode) }

// queueKeys lists every mode's queue, first's first.
func (r *RedisStore) queueKeys(first string) []string {
	out := make([]string, 0, 2)
	if ValidMode(first) {
		out = append(out, r.queueKey(first))
	}
	for _, m := range []string{ModeVideo, ModeText} {
		if m != first {
			out = append(out, r.queueKey(m))
		}
	}
	return out
}

// pairKey is where the avoid-repeat window of a pair is kept: the end of
// the window (ms, matcher clock), expiring with it.
func (r *RedisStore) pairKey(a, b string) string {
	if a > b {
		a, b = b, a
	}
	return r.prefix + "pm:" + strconv.Itoa(len(a)) + ":" + a + b
}

func flag(b bool) int {
	if b {
		return 1
	}
	return 0
}

func strs(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
