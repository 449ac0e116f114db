package matcher

// Presence: the heartbeat that keeps a node's tickets from being taken
// for ghosts, and the loop (Run) that beats and keeps the lease.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Beat marks this node alive for one HeartbeatTTL.
func (r *RedisStore) Beat(ctx context.Context) error {
	sent := r.now()
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
