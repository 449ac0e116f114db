package matcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisStore keeps the queues in Redis so several nodes share them. Every
// key carries one hash tag, so the multi-key scripts below run in one slot
// on a Cluster too; each script is one atomic step, which is what keeps
// matcher workers on different nodes from claiming the same stranger.
type RedisStore struct {
	rdb    redis.UniversalClient
	prefix string // "duet:{q}:" - the braces are the Cluster hash tag
}

// NewRedisStore uses rdb with keys under keyPrefix.
func NewRedisStore(rdb redis.UniversalClient, keyPrefix string) *RedisStore {
	return &RedisStore{rdb: rdb, prefix: keyPrefix + "{q}:"}
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

// KEYS: tickets hash, modes hash, mode set. ARGV: session, mode, ticket.
var addScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
return 1`)

// KEYS: tickets, modes, mode-set prefix. ARGV: session.
var removeScript = redis.NewScript(`
local mode = redis.call('HGET', KEYS[2], ARGV[1])
if not mode then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3] .. mode, ARGV[1])
return 1`)

// KEYS: tickets, modes, mode-set prefix, met key. ARGV: a, b, window ms, until ms.
var claimScript = redis.NewScript(`
if ARGV[1] == ARGV[2] then return 0 end
local ma = redis.call('HGET', KEYS[2], ARGV[1])
local mb = redis.call('HGET', KEYS[2], ARGV[2])
if not ma or not mb then return 0 end
for i, s in ipairs({ARGV[1], ARGV[2]}) do
  local m = redis.call('HGET', KEYS[2], s)
  redis.call('HDEL', KEYS[1], s)
  redis.call('HDEL', KEYS[2], s)
  redis.call('SREM', KEYS[3] .. m, s)
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
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encoding ticket: %w", err)
	}
	n, err := addScript.Run(ctx, r.rdb, []string{r.key("tickets"), r.key("modes"), r.key("mode", t.Mode)},
		t.Session, t.Mode, b).Int()
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
	n, err := removeScript.Run(ctx, r.rdb, []string{r.key("tickets"), r.key("modes"), r.key("mode") + ":"}, session).Int()
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
	out := make([]Ticket, 0, len(raw))
	for _, v := range raw {
		s, ok := v.(string)
		if !ok {
			continue // left between the two reads
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
		[]string{r.key("tickets"), r.key("modes"), r.key("mode") + ":", r.metKey(a, b)},
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
