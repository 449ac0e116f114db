package matcher

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/duetchat/duet/internal/testtool"
)

func TestRedisStoreConformance(t *testing.T) {
	addr := testtool.StartRedis(t)
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}})
	t.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	n := 0
	storeConformance(t, func(*testing.T) Store {
		n++ // a fresh key space per case, on one server
		return NewRedisStore(rdb, fmt.Sprintf("test%d:", n))
	})
}
