package matcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
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
	prefix  string // "duet:{q}:" - the braces are the Cluster hash tag
	node    string
	ttl     time.Duration
	orphans func(n int) // called with the number of ghosts dropped
	lag     func(d time.Duration)
	reset   func()
	beaten  atomic.Bool
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
	return &RedisStore{rdb: rdb, prefix: keyPrefix + "{q}:", node: opt.Node, ttl: opt.HeartbeatTTL,
		orphans: opt.Orphans, lag: opt.PubSubLag, reset: opt.OnReset}
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

// KEYS: tickets hash, modes hash, mode set, owners hash, node key.
// ARGV: session, mode, ticket, node, ttl ms.
var addScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SET', KEYS[5], 1, 'PX', ARGV[5])
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

// KEYS: tickets, modes, mode-set prefix, met key, owners. ARGV: a, b, window ms, until ms.
var claimScript = redis.NewScript(`
if ARGV[1] == ARGV[2] then return 0 end
local ma = redis.call('HGET', KEYS[2], ARGV[1])
local mb = redis.call('HGET', KEYS[2], ARGV[2])
if not ma or not mb then return 0 end
for _, p in ipairs({{ARGV[1], ma}, {ARGV[2], mb}}) do
  redis.call('HDEL', KEYS[1], p[1])
  redis.call('HDEL', KEYS[2], p[1])
  redis.call('HDEL', KEYS[5], p[1])
  redis.call('SREM', KEYS[3] .. p[2], p[1])
end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[4], ARGV[4], 'PX', ARGV[3])
end
return 1`)

// KEYS: met key. ARGV: now ms.
var metScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if tonumber(ARGV[1]) < tonumber(v) then return 1 end
redis.call('DEL', KEYS[1])
return 0`)

func (r *RedisStore) metKey(a, b string) string {
	if a > b {
		a, b = b, a
	}
	return r.key("met", a, b)
}

// Add implements Store.
func (r *RedisStore) Add(ctx context.Context, t Ticket) error {
	t.Node = r.node
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encoding ticket: %w", err)
	}
	n, err := addScript.Run(ctx, r.rdb,
		[]string{r.key("tickets"), r.key("modes"), r.key("mode", t.Mode), r.key("owners"), r.key("node", r.node)},
		t.Session, t.Mode, b, r.node, r.ttl.Milliseconds()).Int()
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

// Waiting implements Store.
func (r *RedisStore) Waiting(ctx context.Context, mode string) ([]Ticket, error) {
	sessions, err := r.rdb.SMembers(ctx, r.key("mode", mode)).Result()
	if err != nil {
		return nil, fmt.Errorf("redis waiting: %w", err)
	}
	if len(sessions) == 0 {
		return nil, nil
	}
	raw, err := r.rdb.HMGet(ctx, r.key("tickets"), sessions...).Result()
	if err != nil {
		return nil, fmt.Errorf("redis waiting: %w", err)
	}
	alive, err := r.alive(ctx, sessions)
	if err != nil {
		return nil, err
	}
	out := make([]Ticket, 0, len(raw))
	for i, v := range raw {
		s, ok := v.(string)
		if !ok || !alive[i] {
			continue // left between the reads, or a ghost (dropped by alive)
		}
		var t Ticket
		if err := json.Unmarshal([]byte(s), &t); err != nil {
			return nil, fmt.Errorf("decoding ticket: %w", err)
		}
		out = append(out, t)
	}
	return out, nil
}

// Claim implements Store.
func (r *RedisStore) Claim(ctx context.Context, a, b string, now, metUntil time.Time) error {
	window := metUntil.Sub(now).Milliseconds()
	n, err := claimScript.Run(ctx, r.rdb,
		[]string{r.key("tickets"), r.key("modes"), r.key("mode") + ":", r.metKey(a, b), r.key("owners")},
		a, b, max(window, 0), metUntil.UnixMilli()).Int()
	if err != nil {
		return fmt.Errorf("redis claim: %w", err)
	}
	if n == 0 {
		return ErrNotWaiting
	}
	return nil
}

// Met implements Store.
func (r *RedisStore) Met(ctx context.Context, a, b string, now time.Time) (bool, error) {
	n, err := metScript.Run(ctx, r.rdb, []string{r.metKey(a, b)}, now.UnixMilli()).Int()
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

func (r *RedisStore) removeKeys() []string {
	return []string{r.key("tickets"), r.key("modes"), r.key("mode") + ":", r.key("owners")}
}

// alive reports, per session, whether its node still beats, and drops
// the tickets of nodes that do not.
func (r *RedisStore) alive(ctx context.Context, sessions []string) ([]bool, error) {
	owners, err := r.rdb.HMGet(ctx, r.key("owners"), sessions...).Result()
	if err != nil {
		return nil, fmt.Errorf("redis owners: %w", err)
	}
	nodes := map[string]*redis.IntCmd{}
	pipe := r.rdb.Pipeline()
	for _, o := range owners {
		if n, ok := o.(string); ok && nodes[n] == nil {
			nodes[n] = pipe.Exists(ctx, r.key("node", n))
		}
	}
	if len(nodes) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("redis heartbeats: %w", err)
		}
	}
	out := make([]bool, len(sessions))
	dropped := 0
	for i, o := range owners {
		n, ok := o.(string)
		if !ok {
			continue
		}
		if nodes[n].Val() == 1 {
			out[i] = true
			continue
		}
		// Only if it still belongs to the dead node: the session may have
		// re-queued elsewhere since.
		if k, err := removeScript.Run(ctx, r.rdb, r.removeKeys(), sessions[i], n).Int(); err == nil && k == 1 {
			dropped++
		}
	}
	if dropped > 0 {
		r.orphans(dropped)
	}
	return out, nil
}

// Wake implements Waker: one PUBLISH per join.
func (r *RedisStore) Wake(ctx context.Context) error {
	// The payload is the send time, for the pub/sub lag histogram.
	if err := r.rdb.Publish(ctx, r.key("wake"), time.Now().UnixNano()).Err(); err != nil {
		return fmt.Errorf("redis wake: %w", err)
	}
	return nil
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
				if sent, err := strconv.ParseInt(msg.Payload, 10, 64); err == nil {
					r.lag(time.Since(time.Unix(0, sent)))
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
