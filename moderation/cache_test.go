package moderation

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/duetchat/duet/internal/testtool"
)

// TestCacheFollowsOtherNodes: two nodes' caches over one real Redis. A ban
// one node adds is checked from memory on the other as soon as the watch
// delivers it (the resync is a minute away); a lift is forgotten the same
// way; the node that acts knows at once.
func TestCacheFollowsOtherNodes(t *testing.T) {
	addr := testtool.StartRedis(t)
	policy := Policy{ReportsToBan: 2, Window: time.Hour, BanDuration: time.Hour}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var caches [2]*Cache
	var stores [2]*RedisStore
	for i := range caches {
		stores[i] = NewRedisStore(redisClient(t, addr), "duet:", 100)
		caches[i] = NewCache(NewModerator(stores[i], policy, nil, nil), quiet)
		if _, banned, err := caches[i].Check(ctx, "s", "h"); banned || err != nil {
			t.Fatalf("before loading: %v %v", banned, err) // falls through to the store
		}
		go func() { _ = caches[i].Run(ctx, stores[i].Watch, time.Minute) }()
	}
	until := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out: %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	banned := func(c *Cache, session, ip string) bool {
		_, ok, err := c.Check(ctx, session, ip)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	until("both caches loaded", func() bool {
		for _, c := range caches {
			c.mu.Lock()
			loaded := c.loaded
			c.mu.Unlock()
			if !loaded {
				return false
			}
		}
		return true
	})
	b, err := caches[0].Add(ctx, Ban{IPHash: "h1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !banned(caches[0], "any", "h1") {
		t.Fatal("the node that added the ban does not know it")
	}
	until("the other node sees the ban", func() bool { return banned(caches[1], "any", "h1") })
	if ok, err := caches[1].Lift(ctx, b.ID); !ok || err != nil {
		t.Fatalf("lift: %v %v", ok, err)
	}
	if banned(caches[1], "any", "h1") {
		t.Fatal("the lifting node still checks the ban")
	}
	until("the first node forgets the lifted ban", func() bool { return !banned(caches[0], "any", "h1") })
	// A ban from reports, and one heard of from another node, go in at once.
	for _, rep := range []string{"r1", "r2"} {
		if _, err := caches[1].Report(ctx, Report{Reporter: rep, Reported: "bad", At: time.Now()}, "hb"); err != nil {
			t.Fatal(err)
		}
	}
	if !banned(caches[1], "bad", "") || !banned(caches[1], "other", "hb") {
		t.Fatal("a ban from reports is not checked at once where it was made")
	}
	caches[0].Remember(Ban{ID: "x", Session: "heard", Until: time.Now().Add(time.Hour)})
	if !banned(caches[0], "heard", "") {
		t.Fatal("a remembered ban is not checked")
	}
}

// TestCacheKeepsEveryBanOnAKey: an address can carry an operator's long
// ban and a shorter one from reports. The copy answers the one that ends
// last, as the stores do, keeps the other when one is lifted, and a
// reload finds the same answer whatever order the store lists them in.
func TestCacheKeepsEveryBanOnAKey(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := NewModerator(NewMemoryStore(100), Policy{ReportsToBan: 3, Window: time.Hour, BanDuration: time.Hour}, nil, nil)
	c := NewCache(m, quiet)
	if err := c.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	long, err := c.Add(ctx, Ban{IPHash: "h"}, 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	short, err := c.Add(ctx, Ban{IPHash: "h", Session: "s"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, cache := range []*Cache{c, NewCache(m, quiet)} {
		if err := cache.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		if b, ok, _ := cache.Check(ctx, "any", "h"); !ok || b.ID != long.ID {
			t.Fatalf("address check = %v %v, want the year-long ban %s", b.ID, ok, long.ID)
		}
	}
	if ok, err := c.Lift(ctx, long.ID); !ok || err != nil {
		t.Fatalf("lift: %v %v", ok, err)
	}
	if b, ok, _ := c.Check(ctx, "any", "h"); !ok || b.ID != short.ID {
		t.Fatalf("after lifting the long ban: %v %v, want %s still", b.ID, ok, short.ID)
	}
	if b, ok, _ := c.Check(ctx, "s", ""); !ok || b.ID != short.ID {
		t.Fatalf("session check: %v %v, want %s", b.ID, ok, short.ID)
	}
}
