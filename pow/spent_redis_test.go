package pow

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/duetchat/duet/internal/testtool"
)

// TestRedisSpent: on a real Redis a solution is spent once for every
// node sharing the prefix, and its key expires with the challenge.
func TestRedisSpent(t *testing.T) {
	addr := testtool.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() })
	now := time.Now()
	clk := func() time.Time { return now }
	a, b := NewRedisSpent(rdb, "t:", clk), NewRedisSpent(rdb, "t:", clk)
	ctx := context.Background()
	until := now.Add(90 * time.Second)
	if first, err := a.Spend(ctx, "c1", until); !first || err != nil {
		t.Fatalf("first spend: %v %v", first, err)
	}
	if first, err := b.Spend(ctx, "c1", until); first || err != nil {
		t.Fatalf("second spend on another node: first=%v err=%v, want refused", first, err)
	}
	ttl, err := rdb.TTL(ctx, "t:pow:c1").Result()
	if err != nil || ttl <= 80*time.Second || ttl > 90*time.Second {
		t.Fatalf("key TTL %v (%v), want about 90s", ttl, err)
	}
	if first, err := b.Spend(ctx, "c2", until); !first || err != nil {
		t.Fatalf("another challenge: %v %v", first, err)
	}
	_ = rdb.Close()
	if _, err := a.Spend(ctx, "c3", until); err == nil {
		t.Fatal("a closed client reported success")
	}
}
