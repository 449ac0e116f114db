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
// Presence: every ticket names the node that queued it, and each node
// keeps a heartbeat key alive (Run). A ticket whose node's heartbeat has
// lapsed - the node died without cleaning up - is dropped by the next
// Waiting on any node, so a ghost is never matched.
type RedisStore struct {
	rdb     redis.UniversalClient
	pass    redis.UniversalClient // Waiting and claims
	prefix  string                // "duet:{q}:" - the braces are the Cluster hash tag
	node    string
	ttl     time.Duration
	orphans func(n int) // called with the number of ghosts dropped
	lag     func(d time.Duration)
	reset   func()
	beaten  atomic.Bool
	adds    *batcher // joins arriving together share one pipeline

	mu  sync.Mutex
	met map[string]metView // by mode
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
	// PubSubLag, if set, gets the publish-to-receive delay of each wake-up
	// (across nodes it includes their clock difference).
	PubSubLag func(d time.Duration)
	// OnReset, if set, is called when a beat finds this node's heartbeat
	// gone although an earlier one landed: Redis restarted empty (or was
	// away past the TTL), so this node's waiting tickets must be re-added.
	OnReset func()
	// PassClient, if set, carries the pairing pass (Waiting, claims) so
	// that it never queues for a connection behind a burst of joins.
	PassClient redis.UniversalClient
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
	return &RedisStore{rdb: rdb, pass: opt.PassClient, prefix: keyPrefix + "{q}:", node: opt.Node, ttl: opt.HeartbeatTTL,
		orphans: opt.Orphans, lag: opt.PubSubLag, reset: opt.OnReset,
		adds: newBatcher(rdb, addScript, maxAddBatch),
		met:  map[string]metView{}}
}

// Beat marks this node alive for one HeartbeatTTL.
func (r *RedisStore) Beat(ctx context.Context) error {
	if err := r.rdb.Set(ctx, r.key("node", r.node), 1, r.ttl).Err(); err != nil {
		return fmt.Errorf("redis heartbeat: %w", err)
	}
	// A join also refreshes the node key, so a restart is told by a key
	// only beats write.
	err := r.rdb.SetArgs(ctx, r.key("beat", r.node), 1, redis.SetArgs{TTL: 10 * r.ttl, Get: true}).Err()
	switch {
	case errors.Is(err, redis.Nil):
		if r.beaten.Swap(true) {
			r.reset()
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

// Run beats until ctx ends. A failed beat is retried on the next tick;
// the node's tickets survive as long as one beat in three lands.
func (r *RedisStore) Run(ctx context.Context) error {
	tick := time.NewTicker(r.ttl / 3)
	defer tick.Stop()
	for {
		_ = r.Beat(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func (r *RedisStore) key(parts ...string) string {
	k := r.prefix
	for i, p := range parts {
		if i > 0 {
			k += ":"
		}
		k += p
	}
	return k
}

// KEYS: tickets hash, modes hash, mode set, owners hash, node key, wake
// channel. ARGV: session, mode, ticket, node, ttl ms, wake payload.
// The wake-up is published by the script itself: one round trip per join.
var addScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SET', KEYS[5], 1, 'PX', ARGV[5])
redis.call('PUBLISH', KEYS[6], ARGV[6])
return 1`)

// KEYS: tickets, modes, mode-set prefix, owners. ARGV: session, and
// optionally the node the ticket must still belong to (orphan cleanup).
var removeScript = redis.NewScript(`
local mode = redis.call('HGET', KEYS[2], ARGV[1])
if not mode then return 0 end
if ARGV[2] and redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('SREM', KEYS[3] .. mode, ARGV[1])
return 1`)

// Who met whom is one sorted set per session ("met:" + session): members
// are partners, scores the end of their avoid-repeat window in ms.
//
// KEYS: tickets, modes, mode-set prefix, owners, met prefix.
// ARGV: a, b, window ms, until ms, now ms.
var claimScript = redis.NewScript(`
if ARGV[1] == ARGV[2] then return 0 end
local ma = redis.call('HGET', KEYS[2], ARGV[1])
local mb = redis.call('HGET', KEYS[2], ARGV[2])
if not ma or not mb then return 0 end
for _, p in ipairs({{ARGV[1], ma}, {ARGV[2], mb}}) do
  redis.call('HDEL', KEYS[1], p[1])
  redis.call('HDEL', KEYS[2], p[1])
  redis.call('HDEL', KEYS[4], p[1])
  redis.call('SREM', KEYS[3] .. p[2], p[1])
end
if tonumber(ARGV[3]) > 0 then
  for _, p in ipairs({{ARGV[1], ARGV[2]}, {ARGV[2], ARGV[1]}}) do
    local k = KEYS[5] .. p[1]
    redis.call('ZREMRANGEBYSCORE', k, '-inf', ARGV[5])
    redis.call('ZADD', k, ARGV[4], p[2])
    redis.call('PEXPIRE', k, ARGV[3])
  end
end
return 1`)

// KEYS: met prefix. ARGV: a, b, now ms.
var metScript = redis.NewScript(`
local v = redis.call('ZSCORE', KEYS[1] .. ARGV[1], ARGV[2])
if not v then return 0 end
if tonumber(ARGV[3]) < tonumber(v) then return 1 end
redis.call('ZREM', KEYS[1] .. ARGV[1], ARGV[2])
redis.call('ZREM', KEYS[1] .. ARGV[2], ARGV[1])
return 0`)

// waitingScript reads one mode's queue in one round trip: each live
// ticket with the partners it met recently, and drops the tickets of
// nodes whose heartbeat lapsed (ghosts), counting them.
//
// It also holds the pairing lease: only the node holding it gets the
// queue, so the matchers of several nodes do not all pair the same
// snapshot and lose most of their claims to each other. The lease lapses
// after leaseTTL without a pass, and the next node to pass takes it.
//
// KEYS: mode set, tickets, modes, owners, mode-set prefix, lease.
// ARGV: node-key prefix, met prefix, now ms, node, lease ms.
var waitingScript = redis.NewScript(`
local holder = redis.call('GET', KEYS[6])
if holder and holder ~= ARGV[4] then return {-1, {}} end
redis.call('SET', KEYS[6], ARGV[4], 'PX', ARGV[5])
local ids = redis.call('SMEMBERS', KEYS[1])
local out = {}
local dropped = 0
local alive = {}
for _, id in ipairs(ids) do
  local owner = redis.call('HGET', KEYS[4], id)
  if owner then
    if alive[owner] == nil then alive[owner] = redis.call('EXISTS', ARGV[1] .. owner) == 1 end
    if alive[owner] then
      local t = redis.call('HGET', KEYS[2], id)
      if t then
        out[#out + 1] = {t, redis.call('ZRANGEBYSCORE', ARGV[2] .. id, '(' .. ARGV[3], '+inf')}
      end
    else
      local mode = redis.call('HGET', KEYS[3], id)
      redis.call('HDEL', KEYS[2], id)
      redis.call('HDEL', KEYS[3], id)
      redis.call('HDEL', KEYS[4], id)
      if mode then redis.call('SREM', KEYS[5] .. mode, id) end
      dropped = dropped + 1
    end
  end
end
return {dropped, out}`)

// maxAddBatch bounds one pipeline of joins.
const maxAddBatch = 128

// Add implements Store. Joins made at the same moment (a burst of Next
// presses) share one pipeline; each is still its own atomic script.
func (r *RedisStore) Add(ctx context.Context, t Ticket) error {
	t.Node = r.node
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encoding ticket: %w", err)
	}
	n, err := r.adds.run(ctx,
		[]string{r.key("tickets"), r.key("modes"), r.key("mode", t.Mode), r.key("owners"), r.key("node", r.node), r.key("wake")},
		t.Session, t.Mode, b, r.node, r.ttl.Milliseconds(), wakePayload(r.node, time.Now())).Int()
	if err != nil {
		return fmt.Errorf("redis add: %w", err)
	}
	if n == 0 {
		return ErrAlreadyWaiting
	}
	return nil
}

// Remove implements Store.
func (r *RedisStore) Remove(ctx context.Context, session string) (bool, error) {
	n, err := removeScript.Run(ctx, r.rdb, r.removeKeys(), session).Int()
	if err != nil {
		return false, fmt.Errorf("redis remove: %w", err)
	}
	return n == 1, nil
}

// Waiting implements Store. The partners each ticket met come back with
// it and answer Met during the pass without a round trip per candidate.
func (r *RedisStore) Waiting(ctx context.Context, mode string) ([]Ticket, error) {
	now := time.Now().UnixMilli()
	res, err := waitingScript.Run(ctx, r.pass,
		[]string{r.key("mode", mode), r.key("tickets"), r.key("modes"), r.key("owners"), r.key("mode") + ":", r.key("lease")},
		r.key("node")+":", r.key("met")+":", now, r.node, leaseTTL.Milliseconds()).Slice()
	if err != nil {
		return nil, fmt.Errorf("redis waiting: %w", err)
	}
	if len(res) != 2 {
		return nil, fmt.Errorf("redis waiting: unexpected reply %v", res)
	}
	if n, _ := res[0].(int64); n < 0 {
		return nil, ErrNotLeader
	}
	if n, _ := res[0].(int64); n > 0 {
		r.orphans(int(n))
	}
	rows, _ := res[1].([]any)
	out := make([]Ticket, 0, len(rows))
	met := make(map[string]map[string]bool, len(rows))
	for _, row := range rows {
		pair, ok := row.([]any)
		if !ok || len(pair) != 2 {
			return nil, fmt.Errorf("redis waiting: unexpected row %v", row)
		}
		raw, _ := pair[0].(string)
		var t Ticket
		if err := json.Unmarshal([]byte(raw), &t); err != nil {
			return nil, fmt.Errorf("decoding ticket: %w", err)
		}
		out = append(out, t)
		partners, _ := pair[1].([]any)
		set := make(map[string]bool, len(partners))
		for _, p := range partners {
			if s, ok := p.(string); ok {
				set[s] = true
			}
		}
		met[t.Session] = set
	}
	r.mu.Lock()
	r.met[mode] = metView{at: now, by: met}
	r.mu.Unlock()
	return out, nil
}

// leaseTTL is how long the pairing lease outlives its holder's last pass.
const leaseTTL = 3 * time.Second

// metView is what the last Waiting of one mode said about who met whom.
type metView struct {
	at int64 // ms
	by map[string]map[string]bool
}

// Claim implements Store.
func (r *RedisStore) Claim(ctx context.Context, a, b string, now, metUntil time.Time) error {
	window := metUntil.Sub(now).Milliseconds()
	n, err := claimScript.Run(ctx, r.rdb,
		[]string{r.key("tickets"), r.key("modes"), r.key("mode") + ":", r.key("owners"), r.key("met") + ":"},
		a, b, max(window, 0), metUntil.UnixMilli(), now.UnixMilli()).Int()
	if err != nil {
		return fmt.Errorf("redis claim: %w", err)
	}
	if n == 0 {
		return ErrNotWaiting
	}
	return nil
}

// ClaimBatch implements BatchClaimer: every claim of a pass in one
// pipeline, one round trip. Each is still its own atomic script, so the
// outcome per pair is exactly what Claim would have said.
func (r *RedisStore) ClaimBatch(ctx context.Context, pairs [][2]string, now, metUntil time.Time) []error {
	window := max(metUntil.Sub(now).Milliseconds(), 0)
	keys := []string{r.key("tickets"), r.key("modes"), r.key("mode") + ":", r.key("owners"), r.key("met") + ":"}
	calls := make([]scriptCall, len(pairs))
	for i, p := range pairs {
		calls[i] = scriptCall{keys: keys, args: []any{p[0], p[1], window, metUntil.UnixMilli(), now.UnixMilli()}}
	}
	out := make([]error, len(pairs))
	for i, cmd := range runScripts(ctx, r.pass, claimScript, calls) {
		n, err := cmd.Int()
		switch {
		case err != nil:
			out[i] = fmt.Errorf("redis claim: %w", err)
		case n == 0:
			out[i] = ErrNotWaiting
		}
	}
	return out
}

// metFresh bounds how old a pass's view of who met whom may be and still
// answer Met; a pass reads it a moment before it asks.
const metFresh = 2 * time.Second

// Met implements Store: from the last Waiting when it covers a and is
// fresh (a pair met since then is claimed, so no longer a candidate in
// that pass), else from Redis.
func (r *RedisStore) Met(ctx context.Context, a, b string, now time.Time) (bool, error) {
	r.mu.Lock()
	for _, v := range r.met {
		if set, ok := v.by[a]; ok && now.UnixMilli()-v.at < metFresh.Milliseconds() {
			r.mu.Unlock()
			return set[b], nil
		}
	}
	r.mu.Unlock()
	n, err := metScript.Run(ctx, r.rdb, []string{r.key("met") + ":"}, a, b, now.UnixMilli()).Int()
	if err != nil {
		return false, fmt.Errorf("redis met: %w", err)
	}
	return n == 1, nil
}

// Counts implements Store.
func (r *RedisStore) Counts(ctx context.Context) (map[string]int, error) {
	pipe := r.rdb.Pipeline()
	v := pipe.SCard(ctx, r.key("mode", ModeVideo))
	t := pipe.SCard(ctx, r.key("mode", ModeText))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("redis counts: %w", err)
	}
	return map[string]int{ModeVideo: int(v.Val()), ModeText: int(t.Val())}, nil
}

// wakePayload names the joining node and the publish time.
func wakePayload(node string, now time.Time) string {
	return node + " " + strconv.FormatInt(now.UnixNano(), 10)
}

// parseWake reads a wake payload: the node that published it and when.
// A payload of one number (a node of an older version) names no node.
func parseWake(payload string) (node string, sent time.Time, ok bool) {
	at := payload
	if i := strings.LastIndexByte(payload, ' '); i >= 0 {
		node, at = payload[:i], payload[i+1:]
	}
	ns, err := strconv.ParseInt(at, 10, 64)
	if err != nil {
		return node, time.Time{}, false
	}
	return node, time.Unix(0, ns), true
}

func (r *RedisStore) removeKeys() []string {
	return []string{r.key("tickets"), r.key("modes"), r.key("mode") + ":", r.key("owners")}
}

// Wakes implements Waker. The subscription reconnects by itself (go-redis
// resubscribes after a lost connection); signals are coalesced so a burst
// of joins costs one pass.
func (r *RedisStore) Wakes(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	sub := r.rdb.Subscribe(ctx, r.key("wake"))
	go func() {
		defer sub.Close()
		msgs := sub.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case msg, ok := <-msgs:
				if !ok {
					return
				}
				from, sent, ok := parseWake(msg.Payload)
				if from == r.node {
					// This node's own join: its matcher was poked locally
					// when the add returned, so a second pass would find
					// nothing the first did not.
					continue
				}
				if ok {
					r.lag(time.Since(sent))
				}
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out
}
