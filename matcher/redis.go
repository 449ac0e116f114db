package matcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisStore keeps the queues in Redis so several nodes share them. Every
// key carries one hash tag, so the multi-key scripts below run in one slot
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
	beaten  atomic.Bool
	nodeAt  atomic.Int64 // unix ns of the last write of this node's key
	adds    *batcher     // joins arriving together share one pipeline
	gapSet  atomic.Bool  // a timer is out for the view's gap

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
}

// Timings of the pairing lease and of the view's checks.
const (
	// leaseTTL is how long the pairing lease outlives its holder's last
	// renewal; another node takes it after that.
	leaseTTL = 3 * time.Second
	// renewEvery is how often the holder renews the lease, asks Redis
	// how far its change counter is (a missed announcement shows there)
	// and how long the other nodes' heartbeats last.
	renewEvery = time.Second
	// acquireEvery is how often a node that does not hold the lease tries
	// to take it.
	acquireEvery = time.Second
	// subscribeTimeout bounds the subscription's first round trip.
	subscribeTimeout = 2 * time.Second
)

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
	r := &RedisStore{rdb: rdb, pass: opt.PassClient, prefix: keyPrefix + "{q}:", node: opt.Node, ttl: opt.HeartbeatTTL,
		orphans: opt.Orphans, lag: opt.PubSubLag, onReset: opt.OnReset,
		adds: newBatcher(rdb, addScript, maxAddBatch),
		view: &view{}, memo: newPairMemo(),
		alive: map[string]time.Time{}, wakers: map[chan struct{}]struct{}{}}
	r.view.gapTimer = r.armGap
	return r
}

// armGap makes sure the pass hears of a gap in the view's changes once it
// is gapWait old, when the pass reads the whole queue again (one timer at
// a time: out-of-order changes open and close gaps all the time).
func (r *RedisStore) armGap() {
	if r.gapSet.CompareAndSwap(false, true) {
		time.AfterFunc(gapWait, r.gapDue)
	}
}

func (r *RedisStore) gapDue() {
	r.gapSet.Store(false)
	since := r.view.gapSince()
	if since.IsZero() {
		return
	}
	if left := time.Until(since.Add(gapWait)); left > 0 {
		if r.gapSet.CompareAndSwap(false, true) {
			time.AfterFunc(left, r.gapDue)
		}
		return
	}
	r.wakeAll()
}

// Beat marks this node alive for one HeartbeatTTL.
func (r *RedisStore) Beat(ctx context.Context) error {
	sent := time.Now()
	if err := r.rdb.Set(ctx, r.key("node", r.node), 1, r.ttl).Err(); err != nil {
		return fmt.Errorf("redis heartbeat: %w", err)
	}
	r.nodeAt.Store(sent.UnixNano())
	// A join may also write the node key, so a restart is told by a key
	// only beats write.
	err := r.rdb.SetArgs(ctx, r.key("beat", r.node), 1, redis.SetArgs{TTL: 10 * r.ttl, Get: true}).Err()
	switch {
	case errors.Is(err, redis.Nil):
		if r.beaten.Swap(true) {
			r.view.invalidate()
			r.wakeAll()
			r.onReset()
		}
	case err != nil:
		return fmt.Errorf("redis heartbeat: %w", err)
	default:
		r.beaten.Store(true)
	}
	return nil
}

// NodeAlive reports whether node's heartbeat is current.
func (r *RedisStore) NodeAlive(ctx context.Context, node string) (bool, error) {
	n, err := r.rdb.Exists(ctx, r.key("node", node)).Result()
	if err != nil {
		return false, fmt.Errorf("redis node heartbeat: %w", err)
	}
	return n == 1, nil
}

// Node is the name tickets from this store carry.
func (r *RedisStore) Node() string { return r.node }

// Run beats until ctx ends, and while this node pairs it renews the
// lease and checks its view every second, queue or no queue (a missed
// announcement of the only join must not wait for another join). A
// failed beat is retried on the next tick; the node's tickets survive as
// long as one beat in three lands. Each round trip ends by the next tick.
func (r *RedisStore) Run(ctx context.Context) error {
	beat := time.NewTicker(r.ttl / 3)
	defer beat.Stop()
	renew := time.NewTicker(renewEvery)
	defer renew.Stop()
	r.beatOnce(ctx)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-beat.C:
			r.beatOnce(ctx)
		case <-renew.C:
			r.keepLease(ctx)
		}
	}
}

func (r *RedisStore) beatOnce(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, r.ttl/3)
	defer cancel()
	_ = r.Beat(ctx)
}

// keepLease renews the lease unless a pass just did; a view found behind
// wakes the pass, which reads the queue again.
func (r *RedisStore) keepLease(ctx context.Context) {
	r.mu.Lock()
	due := r.holder && r.feeds > 0 && time.Since(r.leaseAt) >= renewEvery/2
	r.mu.Unlock()
	if !due {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, renewEvery)
	defer cancel()
	_ = r.renew(ctx) // an error: the next tick or pass tries again
	if r.isHolder() && r.view.needsSync(time.Now()) {
		r.wakeAll()
	}
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

// The queue's keys: "wait:<mode>" hashes, "seq" (the change counter),
// "changes" (the announcement channel), "pairer" (the pairing lease),
// "node:<n>" and "beat:<n>" (heartbeats), "pm:<pair>" (who met whom).
// A ticket's value is its node, a newline and its JSON: the scripts read
// the node without decoding JSON.
//
// Every script that changes the queue takes the next number of "seq" and,
// unless its node pairs (and so applies its own changes from the reply),
// announces the change: "<seq> <op> <sent ns> <node>\n<body>", the body
// the ticket's JSON for an add, the session for a remove.

// KEYS: seq, channel, node key, the mode's queue, the other queues.
// ARGV: session, value, announce (0/1), write the node key (0/1), ttl ms, sent ns.
var addScript = redis.NewScript(`
for i = 5, #KEYS do
  if redis.call('HEXISTS', KEYS[i], ARGV[1]) == 1 then return 0 end
end
if redis.call('HSETNX', KEYS[4], ARGV[1], ARGV[2]) == 0 then return 0 end
local s = redis.call('INCR', KEYS[1])
if ARGV[4] == '1' then redis.call('SET', KEYS[3], 1, 'PX', ARGV[5]) end
if ARGV[3] == '1' then redis.call('PUBLISH', KEYS[2], s .. ' a ' .. ARGV[6] .. ' ' .. ARGV[2]) end
return s`)

// KEYS: seq, channel, the queues. ARGV: session, announce (0/1), sent ns, node.
var removeScript = redis.NewScript(`
for i = 3, #KEYS do
  if redis.call('HDEL', KEYS[i], ARGV[1]) == 1 then
    local s = redis.call('INCR', KEYS[1])
    if ARGV[2] == '1' then
      redis.call('PUBLISH', KEYS[2], s .. ' r ' .. ARGV[3] .. ' ' .. ARGV[4] .. '\n' .. ARGV[1])
    end
    return s
  end
end
return 0`)

// claimScript: both tickets, if both wait, go in one step, and the pair's
// window starts; a pair inside its window is refused unless the caller
// chose it knowingly (a repeat the rules allow). Tickets of nodes the
// caller names are checked first: a ghost is dropped, not matched.
// Replies: {1} claimed; {0, has a, has b, seq} one missing; {2, until}
// they met; {3, seq, ghosts} ghosts dropped; {4} a == b.
//
// KEYS: seq, pair key, the queues (a's first as far as the caller knows).
// ARGV: a, b, until ms, window ms, now ms, repeat allowed (0/1),
// node-key prefix, nodes to check...
var claimScript = redis.NewScript(`
if ARGV[1] == ARGV[2] then return {4} end
local v = redis.call('HMGET', KEYS[3], ARGV[1], ARGV[2])
local va, vb = v[1], v[2]
local ka, kb = KEYS[3], KEYS[3]
for i = 4, #KEYS do
  if not va then va = redis.call('HGET', KEYS[i], ARGV[1]); ka = KEYS[i] end
  if not vb then vb = redis.call('HGET', KEYS[i], ARGV[2]); kb = KEYS[i] end
end
if not va or not vb then
  return {0, va and 1 or 0, vb and 1 or 0, tonumber(redis.call('GET', KEYS[1]) or '0')}
end
if #ARGV > 7 then
  local dead, ghosts = {}, {}
  for _, p in ipairs({{ARGV[1], va, ka}, {ARGV[2], vb, kb}}) do
    local owner = string.match(p[2], '^([^\n]*)\n') or ''
    for i = 8, #ARGV do
      if ARGV[i] == owner then
        if dead[owner] == nil then dead[owner] = redis.call('EXISTS', ARGV[7] .. owner) == 0 end
        if dead[owner] then
          redis.call('HDEL', p[3], p[1])
          ghosts[#ghosts + 1] = p[1]
        end
        break
      end
    end
  end
  if #ghosts > 0 then return {3, redis.call('INCR', KEYS[1]), ghosts} end
end
if tonumber(ARGV[4]) > 0 then
  local old = redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4], 'NX', 'GET')
  if old then
    if ARGV[6] ~= '1' and tonumber(ARGV[5]) < tonumber(old) then return {2, old} end
    redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
  end
end
if ka == kb then
  redis.call('HDEL', ka, ARGV[1], ARGV[2])
else
  redis.call('HDEL', ka, ARGV[1])
  redis.call('HDEL', kb, ARGV[2])
end
return {1}`)

// KEYS: pair key. ARGV: now ms. Replies the window's end if it is still
// open, else 0 (and forgets it).
var metScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if tonumber(ARGV[1]) < tonumber(v) then return tonumber(v) end
redis.call('DEL', KEYS[1])
return 0`)

// readScript takes or keeps the pairing lease and reads whole queues with
// the change number they stand at: the view's starting point, or a pass's
// queue when the node has no view. Tickets of nodes whose heartbeat
// lapsed (ghosts) are dropped, counted, and numbered as one change.
// Replies {-1} when another node holds the lease, else {seq, dropped,
// {node, pttl, ...} of the nodes seen alive, {queue index, value, ...}}.
//
// KEYS: lease, seq, the queues to read. ARGV: node, lease ms, node-key prefix.
var readScript = redis.NewScript(`
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return {-1} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local alive, ttls, out, dropped = {}, {}, {}, 0
for i = 3, #KEYS do
  local all = redis.call('HGETALL', KEYS[i])
  for j = 1, #all, 2 do
    local owner = string.match(all[j + 1], '^([^\n]*)\n') or ''
    if alive[owner] == nil then
      local t = redis.call('PTTL', ARGV[3] .. owner)
      alive[owner] = t ~= -2
      if alive[owner] then
        ttls[#ttls + 1] = owner
        ttls[#ttls + 1] = t
      end
    end
    if alive[owner] then
      out[#out + 1] = i - 2
      out[#out + 1] = all[j + 1]
    else
      redis.call('HDEL', KEYS[i], all[j])
      dropped = dropped + 1
    end
  end
end
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
if dropped > 0 then seq = redis.call('INCR', KEYS[2]) end
return {seq, dropped, ttls, out}`)

// renewScript keeps the lease and reports the change counter and the
// heartbeats of the nodes named. Replies {-1} when another node holds
// the lease, else {1 if this node held it still (0: it had lapsed),
// seq, {pttl per node}}.
//
// KEYS: lease, seq. ARGV: node, lease ms, node-key prefix, nodes...
var renewScript = redis.NewScript(`
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return {-1} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local ttls = {}
for i = 4, #ARGV do ttls[#ttls + 1] = redis.call('PTTL', ARGV[3] .. ARGV[i]) end
return {holder and 1 or 0, tonumber(redis.call('GET', KEYS[2]) or '0'), ttls}`)

// sweepScript drops the tickets named, each if it still belongs to its
// node and that node's heartbeat has lapsed; one change for them all.
// Replies {seq, {sessions dropped}} ({0, {}} when none).
//
// KEYS: seq, the queues. ARGV: node-key prefix, then node, session pairs.
var sweepScript = redis.NewScript(`
local dead, gone = {}, {}
for i = 2, #ARGV, 2 do
  local owner, id = ARGV[i], ARGV[i + 1]
  if dead[owner] == nil then dead[owner] = redis.call('EXISTS', ARGV[1] .. owner) == 0 end
  if dead[owner] then
    for k = 2, #KEYS do
      local v = redis.call('HGET', KEYS[k], id)
      if v and string.sub(v, 1, #owner + 1) == owner .. '\n' then
        redis.call('HDEL', KEYS[k], id)
        gone[#gone + 1] = id
      end
    end
  end
end
if #gone == 0 then return {0, {}} end
return {redis.call('INCR', KEYS[1]), gone}`)

// maxAddBatch bounds one pipeline of joins.
const maxAddBatch = 128

func flag(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Add implements Store. Joins made at the same moment (a burst of Next
// presses) share one pipeline; each is still its own atomic script.
func (r *RedisStore) Add(ctx context.Context, t Ticket) error {
	if !ValidMode(t.Mode) {
		return fmt.Errorf("redis add: invalid mode %q", t.Mode)
	}
	t.Node = r.node
	t.JoinedAt = t.JoinedAt.Round(0) // as the JSON has it
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encoding ticket: %w", err)
	}
	sent := time.Now()
	// The heartbeat is what keeps a ticket from being taken for a ghost;
	// Run writes it every third of its TTL, and a join does too when no
	// write landed for that long (before the first beat, say).
	writeNode := sent.UnixNano()-r.nodeAt.Load() > int64(r.ttl/3)
	keys := append([]string{r.key("seq"), r.key("changes"), r.key("node", r.node)}, r.queueKeys(t.Mode)...)
	// The view hears of the join from the reply, even when ctx ends
	// before it comes: a change it never hears of costs a full read.
	then := func(cmd *redis.Cmd) {
		seq, err := cmd.Int64()
		if err != nil || seq == 0 {
			return
		}
		if writeNode {
			r.nodeAt.Store(sent.UnixNano())
		}
		// This join's own add needs no wake-up (Join pokes the matcher);
		// adds it released from behind a gap do.
		if _, others := r.view.change(change{seq: seq, op: opAdd, t: t}, time.Now()); others {
			r.wakeAll()
		}
	}
	seq, err := r.adds.run(ctx, then, keys,
		t.Session, r.node+"\n"+string(b), flag(!r.isHolder()), flag(writeNode), r.ttl.Milliseconds(), sent.UnixNano()).Int64()
	if err != nil {
		return fmt.Errorf("redis add: %w", err)
	}
	if seq == 0 {
		return ErrAlreadyWaiting
	}
	return nil
}

// Remove implements Store.
func (r *RedisStore) Remove(ctx context.Context, session string) (bool, error) {
	keys := append([]string{r.key("seq"), r.key("changes")}, r.queueKeys("")...)
	seq, err := removeScript.Run(ctx, r.rdb, keys, session, flag(!r.isHolder()), time.Now().UnixNano(), r.node).Int64()
	if err != nil {
		return false, fmt.Errorf("redis remove: %w", err)
	}
	if seq == 0 {
		return false, nil
	}
	if _, others := r.view.change(change{seq: seq, op: opRemove, ids: []string{session}}, time.Now()); others {
		r.wakeAll()
	}
	return true, nil
}

// Waiting implements Store. On the node that pairs, with its view built,
// it asks Redis nothing (but for the lease, once a second): the view is
// the queue. ErrNotLeader on the others. Without announcements (no Run
// of a Matcher on this store yet) every call reads the mode's queue.
func (r *RedisStore) Waiting(ctx context.Context, mode string) ([]Ticket, error) {
	if r.feedLive() {
		if err := r.prepare(ctx); err != nil {
			return nil, err
		}
		if r.view.live() {
			return r.view.tickets(mode), nil
		}
		// Dropped while it was being built (a reset came meanwhile): this
		// pass reads; the next one builds it again.
	}
	_, tickets, err := r.read(ctx, []string{mode})
	return tickets, err
}

// prepare makes the view usable for a pass: the lease taken or kept, the
// view built or rebuilt when it may have missed a change.
func (r *RedisStore) prepare(ctx context.Context) error {
	now := time.Now()
	r.mu.Lock()
	holder, leaseAt := r.holder && now.Sub(r.leaseAt) < leaseTTL, r.leaseAt
	if !holder {
		if now.Sub(r.tried) < acquireEvery {
			r.mu.Unlock()
			return ErrNotLeader
		}
		r.tried = now
	}
	r.mu.Unlock()
	if holder && now.Sub(leaseAt) >= renewEvery {
		if err := r.renew(ctx); err != nil {
			return err
		}
	}
	if !r.isHolder() || r.view.needsSync(time.Now()) {
		return r.resync(ctx)
	}
	return nil
}

// resync builds the view from the whole queue (and takes the lease).
func (r *RedisStore) resync(ctx context.Context) error {
	epoch := r.view.begin()
	seq, tickets, err := r.read(ctx, []string{ModeVideo, ModeText})
	if err != nil {
		if !errors.Is(err, ErrNotLeader) {
			r.view.abort(epoch)
		}
		return err
	}
	r.view.install(epoch, seq, tickets, time.Now())
	return nil
}

// read runs readScript over the modes' queues: the lease, the tickets,
// the change number they stand at.
func (r *RedisStore) read(ctx context.Context, modes []string) (int64, []Ticket, error) {
	keys := []string{r.key("pairer"), r.key("seq")}
	for _, m := range modes {
		keys = append(keys, r.queueKey(m))
	}
	sent := time.Now()
	res, err := readScript.Run(ctx, r.pass, keys, r.node, leaseTTL.Milliseconds(), r.key("node")+":").Slice()
	if err != nil {
		return 0, nil, fmt.Errorf("redis waiting: %w", err)
	}
	if n, _ := res[0].(int64); n < 0 {
		r.lostLease()
		return 0, nil, ErrNotLeader
	}
	if len(res) != 4 {
		return 0, nil, fmt.Errorf("redis waiting: unexpected reply %v", res)
	}
	r.tookLease(sent)
	seq, _ := res[0].(int64)
	if n, _ := res[1].(int64); n > 0 {
		r.orphans(int(n))
	}
	ttls, _ := res[2].([]any)
	r.mu.Lock()
	for i := 0; i+1 < len(ttls); i += 2 {
		node, _ := ttls[i].(string)
		ms, _ := ttls[i+1].(int64)
		r.aliveLocked(node, ms, sent)
	}
	r.mu.Unlock()
	rows, _ := res[3].([]any)
	out := make([]Ticket, 0, len(rows)/2)
	for i := 0; i+1 < len(rows); i += 2 {
		k, _ := rows[i].(int64)
		raw, _ := rows[i+1].(string)
		if k < 1 || int(k) > len(modes) {
			return 0, nil, fmt.Errorf("redis waiting: unexpected row %v", rows[i])
		}
		t, err := decodeTicket(raw)
		if err != nil {
			return 0, nil, err
		}
		t.Mode = modes[k-1]
		out = append(out, t)
	}
	return seq, out, nil
}

// decodeTicket reads a queue value: node "\n" JSON.
func decodeTicket(raw string) (Ticket, error) {
	node, body, _ := strings.Cut(raw, "\n")
	var t Ticket
	if err := json.Unmarshal([]byte(body), &t); err != nil {
		return Ticket{}, fmt.Errorf("decoding ticket: %w", err)
	}
	t.Node = node
	return t, nil
}

// renew keeps the lease, checks the view against the change counter and
// learns how long the other nodes' heartbeats last; it drops the tickets
// of nodes found dead.
func (r *RedisStore) renew(ctx context.Context) error {
	owners := r.view.ownerNodes(r.node)
	args := make([]any, 0, 3+len(owners))
	args = append(args, r.node, leaseTTL.Milliseconds(), r.key("node")+":")
	for _, o := range owners {
		args = append(args, o)
	}
	sent, at := time.Now(), r.view.mark()
	res, err := renewScript.Run(ctx, r.pass, []string{r.key("pairer"), r.key("seq")}, args...).Slice()
	if err != nil {
		return fmt.Errorf("redis lease: %w", err)
	}
	if n, _ := res[0].(int64); n < 0 {
		r.lostLease()
		return ErrNotLeader
	}
	if len(res) != 3 {
		return fmt.Errorf("redis lease: unexpected reply %v", res)
	}
	r.tookLease(sent)
	if held, _ := res[0].(int64); held == 0 {
		// It had lapsed: another node may have paired meanwhile.
		r.view.invalidate()
	}
	seq, _ := res[1].(int64)
	r.view.observe(seq, at, time.Now())
	ttls, _ := res[2].([]any)
	var dead []string
	r.mu.Lock()
	for i, o := range owners {
		if i >= len(ttls) {
			break
		}
		ms, _ := ttls[i].(int64)
		if ms == -2 {
			dead = append(dead, o)
			delete(r.alive, o)
			continue
		}
		r.aliveLocked(o, ms, sent)
	}
	r.mu.Unlock()
	if len(dead) > 0 {
		return r.sweep(ctx, dead)
	}
	return nil
}

// aliveLocked records that node's heartbeat had ms to live at sent (-1:
// no expiry, so good for a lease's length).
func (r *RedisStore) aliveLocked(node string, ms int64, sent time.Time) {
	if ms == -1 {
		ms = leaseTTL.Milliseconds()
	}
	if ms >= 0 {
		r.alive[node] = sent.Add(time.Duration(ms) * time.Millisecond)
	}
}

// sweep drops the view's tickets of dead nodes from Redis.
func (r *RedisStore) sweep(ctx context.Context, dead []string) error {
	pairs := r.view.ticketsOf(dead)
	if len(pairs) == 0 {
		return nil
	}
	args := make([]any, 0, 1+len(pairs))
	args = append(args, r.key("node")+":")
	for _, p := range pairs {
		args = append(args, p)
	}
	res, err := sweepScript.Run(ctx, r.pass, append([]string{r.key("seq")}, r.queueKeys("")...), args...).Slice()
	if err != nil {
		return fmt.Errorf("redis sweep: %w", err)
	}
	if len(res) != 2 {
		return fmt.Errorf("redis sweep: unexpected reply %v", res)
	}
	seq, _ := res[0].(int64)
	gone := strs(res[1])
	if len(gone) > 0 {
		if _, others := r.view.change(change{seq: seq, op: opDrop, ids: gone}, time.Now()); others {
			r.wakeAll()
		}
		r.orphans(len(gone))
	}
	return nil
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

// isHolder: this node took or kept the lease within its TTL, and has
// not heard since that another node holds it.
func (r *RedisStore) isHolder() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.holder && time.Since(r.leaseAt) < leaseTTL
}

func (r *RedisStore) feedLive() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.feeds > 0
}

func (r *RedisStore) tookLease(sent time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.holder, r.leaseAt = true, sent
}

func (r *RedisStore) lostLease() {
	r.mu.Lock()
	r.holder = false
	r.mu.Unlock()
	r.view.off()
}

// Claim implements Store.
func (r *RedisStore) Claim(ctx context.Context, a, b string, now, metUntil time.Time) error {
	return r.ClaimBatch(ctx, [][2]string{{a, b}}, now, metUntil)[0]
}

// errMet: a claim refused because the pair met (and the caller did not
// know): the claim is lost, and the pair known from then on.
var errMet = fmt.Errorf("%w: the pair met recently", ErrNotWaiting)

// ClaimBatch implements BatchClaimer: every claim of a pass in one
// pipeline, one round trip. Each is still its own atomic script, so the
// outcome per pair is exactly what Claim would have said; the view
// learns from each (who went, who was gone already, who had met).
func (r *RedisStore) ClaimBatch(ctx context.Context, pairs [][2]string, now, metUntil time.Time) []error {
	window := max(metUntil.Sub(now).Milliseconds(), 0)
	calls := make([]scriptCall, len(pairs))
	wall := time.Now()
	for i, p := range pairs {
		mode, ownerA, _ := r.view.modeAndOwner(p[0])
		_, ownerB, _ := r.view.modeAndOwner(p[1])
		keys := append([]string{r.key("seq"), r.pairKey(p[0], p[1])}, r.queueKeys(mode)...)
		// Met said yes and the matcher chose them anyway: a repeat the
		// rules allow.
		repeat := window > 0 && r.memo.met(p[0], p[1], now)
		args := []any{p[0], p[1], metUntil.UnixMilli(), window, now.UnixMilli(), flag(repeat), r.key("node") + ":"}
		for _, o := range r.unsure(wall, ownerA, ownerB) {
			args = append(args, o)
		}
		calls[i] = scriptCall{keys: keys, args: args}
	}
	out := make([]error, len(pairs))
	lost := false
	for i, cmd := range runScripts(ctx, r.pass, claimScript, calls) {
		a, b := pairs[i][0], pairs[i][1]
		res, err := cmd.Slice()
		if err != nil {
			out[i] = fmt.Errorf("redis claim: %w", err)
			continue
		}
		code, _ := res[0].(int64)
		switch {
		case code == 1:
			r.view.claimed(a, b)
			r.memo.add(a, b, metUntil, now)
		case code == 0 && len(res) == 4:
			seq, _ := res[3].(int64)
			for k, id := range []string{a, b} {
				if has, _ := res[1+k].(int64); has == 0 {
					r.view.gone(id, seq)
				}
			}
			out[i], lost = ErrNotWaiting, true
		case code == 2 && len(res) == 2:
			until, _ := strconv.ParseInt(fmt.Sprint(res[1]), 10, 64)
			r.memo.add(a, b, time.UnixMilli(until), now)
			out[i], lost = errMet, true
		case code == 3 && len(res) == 3:
			seq, _ := res[1].(int64)
			ghosts := strs(res[2])
			r.view.change(change{seq: seq, op: opDrop, ids: ghosts}, time.Now()) // lost claims wake below
			r.orphans(len(ghosts))
			out[i], lost = ErrNotWaiting, true
		case code == 4:
			out[i] = ErrNotWaiting
		default:
			out[i] = fmt.Errorf("redis claim: unexpected reply %v", res)
		}
	}
	if lost {
		// The view has learned; the strangers of a lost claim need not
		// wait for the pass after next.
		r.wakeAll()
	}
	return out
}

// unsure lists the nodes among owners (other than this one, known) whose
// heartbeat this node cannot vouch for at now: the claim checks them.
func (r *RedisStore) unsure(now time.Time, owners ...string) []string {
	var out []string
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range owners {
		if o == "" || o == r.node || now.Before(r.alive[o]) {
			continue
		}
		if len(out) == 0 || out[0] != o {
			out = append(out, o)
		}
	}
	return out
}

// Met implements Store: from what this node knows while it pairs (a pair
// it does not know is refused by the claim, and then known), else from
// Redis.
func (r *RedisStore) Met(ctx context.Context, a, b string, now time.Time) (bool, error) {
	if r.view.live() {
		return r.memo.met(a, b, now), nil
	}
	until, err := metScript.Run(ctx, r.pass, []string{r.pairKey(a, b)}, now.UnixMilli()).Int64()
	if err != nil {
		return false, fmt.Errorf("redis met: %w", err)
	}
	if until == 0 {
		return false, nil
	}
	// Remembered so that a claim of this pair, if the matcher makes one,
	// is the repeat it chose.
	r.memo.add(a, b, time.UnixMilli(until), now)
	return true, nil
}

// Counts implements Store.
func (r *RedisStore) Counts(ctx context.Context) (map[string]int, error) {
	pipe := r.rdb.Pipeline()
	v := pipe.HLen(ctx, r.queueKey(ModeVideo))
	t := pipe.HLen(ctx, r.queueKey(ModeText))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("redis counts: %w", err)
	}
	return map[string]int{ModeVideo: int(v.Val()), ModeText: int(t.Val())}, nil
}

// parseChange reads an announcement: "<seq> <op> <sent ns> <node>\n<body>".
func parseChange(payload string) (seq int64, op byte, sent time.Time, node, body string, ok bool) {
	f := strings.SplitN(payload, " ", 4)
	if len(f) != 4 || len(f[1]) != 1 {
		return 0, 0, time.Time{}, "", "", false
	}
	seq, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || seq <= 0 {
		return 0, 0, time.Time{}, "", "", false
	}
	ns, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return 0, 0, time.Time{}, "", "", false
	}
	node, body, ok = strings.Cut(f[3], "\n")
	if !ok {
		return 0, 0, time.Time{}, "", "", false
	}
	return seq, f[1][0], time.Unix(0, ns), node, body, true
}

// receive applies one announcement to the view.
func (r *RedisStore) receive(payload string) {
	seq, op, sent, node, body, ok := parseChange(payload)
	if !ok {
		return
	}
	if node != r.node {
		r.lag(time.Since(sent))
	}
	if !r.view.accepting() {
		return // this node does not pair: nothing to keep
	}
	c := change{seq: seq, op: op}
	switch op {
	case opAdd:
		t, err := decodeTicket(node + "\n" + body)
		if err != nil {
			return // the number never comes: a gap, then a full read
		}
		c.t = t
	case opRemove:
		c.ids = []string{body}
	default:
		return
	}
	if self, others := r.view.change(c, time.Now()); self || others {
		r.wakeAll()
	}
}

// wakeAll wakes every matcher on this store (coalesced).
func (r *RedisStore) wakeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for ch := range r.wakers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Wakes implements Waker: it subscribes to the announcements, which keep
// the view current and wake the pass on a join from another node. The
// subscription reconnects by itself (go-redis resubscribes after a lost
// connection); what was announced meanwhile is lost, so a resubscription
// rebuilds the view. Wake-ups are coalesced.
func (r *RedisStore) Wakes(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	r.mu.Lock()
	r.wakers[out] = struct{}{}
	r.mu.Unlock()
	subCtx, cancel := context.WithTimeout(ctx, subscribeTimeout)
	sub := r.rdb.Subscribe(subCtx, r.key("changes"))
	cancel() // bounds the first round trip; go-redis reconnects on its own
	go func() {
		confirmed := false
		defer func() {
			_ = sub.Close()
			r.mu.Lock()
			delete(r.wakers, out)
			if confirmed {
				r.feeds--
			}
			none := r.feeds == 0
			if none {
				// Without announcements this node cannot keep a view, so
				// it must announce its own changes again.
				r.holder = false
			}
			r.mu.Unlock()
			if none {
				r.view.off()
			}
		}()
		msgs := sub.ChannelWithSubscriptions(redis.WithChannelSize(1024))
		for {
			select {
			case <-ctx.Done():
				return
			case msg, ok := <-msgs:
				if !ok {
					return
				}
				switch m := msg.(type) {
				case *redis.Subscription:
					if m.Kind != "subscribe" {
						continue
					}
					if !confirmed {
						confirmed = true
						r.mu.Lock()
						r.feeds++
						r.mu.Unlock()
					} else {
						r.view.invalidate() // announcements were lost while it was away
					}
					r.wakeAll()
				case *redis.Message:
					r.receive(m.Payload)
				}
			}
		}
	}()
	return out
}
