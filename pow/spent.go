package pow

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Spent remembers the solutions already used, each until its challenge
// expires (after that the expiry check refuses it anyway).
type Spent interface {
	// Spend marks challenge used; first is false when it was already.
	Spend(ctx context.Context, challenge string, until time.Time) (first bool, err error)
}

// ErrFull is returned by a MemorySpent holding as many unexpired
// solutions as it may: forgetting one would let it be replayed.
var ErrFull = errors.New("pow: too many solutions in flight; try again shortly")

// MemorySpent is the replay memory of one node: at most max solutions,
// each dropped once its challenge has expired.
type MemorySpent struct {
	now func() time.Time
	max int

	mu    sync.Mutex
	until map[string]time.Time
}

// NewMemorySpent remembers up to max solutions (they live for a
// challenge's expiry, so max bounds the joins a node takes per expiry).
func NewMemorySpent(max int, now func() time.Time) *MemorySpent {
	return &MemorySpent{now: now, max: max, until: make(map[string]time.Time)}
}

// Spend implements Spent.
func (m *MemorySpent) Spend(_ context.Context, challenge string, until time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if t, ok := m.until[challenge]; ok && now.Before(t) {
		return false, nil
	}
	if len(m.until) >= m.max {
		for k, t := range m.until {
			if !now.Before(t) {
				delete(m.until, k)
			}
		}
		if len(m.until) >= m.max {
			return false, ErrFull
		}
	}
	m.until[challenge] = until
	return true, nil
}

// RedisSpent is the replay memory shared by every node on one Redis: one
// key per spent solution, set only if absent and expiring with it.
type RedisSpent struct {
	rdb    redis.UniversalClient
	prefix string
	now    func() time.Time
}

// NewRedisSpent keeps spent solutions under keyPrefix+"pow:".
func NewRedisSpent(rdb redis.UniversalClient, keyPrefix string, now func() time.Time) *RedisSpent {
	return &RedisSpent{rdb: rdb, prefix: keyPrefix + "pow:", now: now}
}

// Spend implements Spent.
func (r *RedisSpent) Spend(ctx context.Context, challenge string, until time.Time) (bool, error) {
	ttl := until.Sub(r.now())
	if ttl < time.Second {
		ttl = time.Second // expired ones are refused before; keep the key briefly anyway
	}
	first, err := r.rdb.SetNX(ctx, r.prefix+challenge, 1, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("pow: marking a solution spent: %w", err)
	}
	return first, nil
}
