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

// On a three-node Cluster every multi-key script must stay in one slot:
// the keys' hash tag is what makes that so.
func TestRedisClusterStoreConformance(t *testing.T) {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: testtool.StartRedisCluster(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	if _, ok := rdb.(*redis.ClusterClient); !ok {
		t.Fatalf("several addresses gave a %T, want a cluster client", rdb)
	}
	n := 0
	storeConformance(t, func(*testing.T) Store {
		n++
		return NewRedisStore(rdb, fmt.Sprintf("cluster%d:", n))
	})
}
