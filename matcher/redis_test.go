package matcher

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
		return NewRedisStore(rdb, fmt.Sprintf("test%d:", n), RedisOptions{Node: "n1"})
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
		return NewRedisStore(rdb, fmt.Sprintf("cluster%d:", n), RedisOptions{Node: "n1"})
	})
}

// A node that dies without cleaning up leaves tickets behind; once its
// heartbeat lapses they leave the queue and are never handed out.
func TestRedisStoreDropsGhosts(t *testing.T) {
	ctx := context.Background()
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{testtool.StartRedis(t)}})
	t.Cleanup(func() { _ = rdb.Close() })
	var mu sync.Mutex
	dropped := 0
	ttl := 300 * time.Millisecond
	dead := NewRedisStore(rdb, "p:", RedisOptions{Node: "dead", HeartbeatTTL: ttl})
	live := NewRedisStore(rdb, "p:", RedisOptions{Node: "live", HeartbeatTTL: ttl, Orphans: func(n int) {
		mu.Lock()
		dropped += n
		mu.Unlock()
	}})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- live.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })

	for _, s := range []string{"g1", "g2", "g3"} {
		if err := dead.Add(ctx, Ticket{Session: s, Mode: ModeVideo}); err != nil {
			t.Fatal(err)
		}
	}
	if err := live.Add(ctx, Ticket{Session: "l1", Mode: ModeVideo}); err != nil {
		t.Fatal(err)
	}
	if w, _ := live.Waiting(ctx, ModeVideo); len(w) != 4 {
		t.Fatalf("before the lapse: %d waiting, want 4", len(w))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		w, err := live.Waiting(ctx, ModeVideo)
		if err != nil {
			t.Fatal(err)
		}
		if len(w) == 1 && w[0].Session == "l1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ghosts still waiting 5s after their node stopped beating: %v", w)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c, _ := live.Counts(ctx); c[ModeVideo] != 1 {
		t.Fatalf("counts %v, want the live ticket only", c)
	}
	mu.Lock()
	defer mu.Unlock()
	if dropped != 3 {
		t.Fatalf("orphan cleanups reported %d, want 3", dropped)
	}
	// The live node's own ticket survives many TTLs while it beats.
	time.Sleep(4 * ttl)
	if w, _ := live.Waiting(ctx, ModeVideo); len(w) != 1 {
		t.Fatalf("the beating node lost its ticket: %v", w)
	}
}

// A join on a node whose matcher is not running is paired by another
// node's matcher at once: the wake-up travels through Redis, since an idle
// matcher has no timer to fall back on.
func TestRedisJoinWakesOtherNodes(t *testing.T) {
	ctx := context.Background()
	addr := testtool.StartRedis(t)
	client := func() redis.UniversalClient {
		c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	got := &collector{}
	idle := New(NewRedisStore(client(), "w:", RedisOptions{Node: "a"}), got, Options{})
	worker := New(NewRedisStore(client(), "w:", RedisOptions{Node: "b"}), got, Options{})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- worker.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	// Let the worker's first (empty) pass finish and its subscription start.
	eventually(t, 5*time.Second, "worker subscribed", func() bool {
		n, err := client().PubSubNumSub(ctx, "w:{q}:wake").Result()
		return err == nil && n["w:{q}:wake"] == 1
	})
	for _, s := range []string{"x", "y"} {
		if err := idle.Join(ctx, Ticket{Session: s, Mode: ModeVideo}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "the other node's matcher pairs them", func() bool { return got.len() == 1 })
}

func TestRedisMetrics(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	rm, err := NewRedisMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{testtool.StartRedis(t)}})
	t.Cleanup(func() { _ = rdb.Close() })
	rm.Instrument(rdb)
	s := NewRedisStore(rdb, "m:", rm.Options(RedisOptions{Node: "n"}))
	// Add goes through a pipeline (joins are batched), Remove is a lone
	// script: both kinds of round trip are timed.
	if err := s.Add(ctx, Ticket{Session: "a", Mode: ModeVideo}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Remove(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	ops := map[string]uint64{}
	for _, f := range families {
		if f.GetName() != "duet_redis_roundtrip_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			ops[m.GetLabel()[0].GetValue()] = m.GetHistogram().GetSampleCount()
		}
	}
	if ops["evalsha"] == 0 || ops["pipeline"] == 0 {
		t.Fatalf("round trips by op: %v, want evalsha and pipeline", ops)
	}
}

// countHook counts the commands a client sends (a pipeline counts its
// commands one by one).
type countHook struct{ n *int64 }

func (countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { *h.n++; return next(ctx, cmd) }
}
func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { *h.n += int64(len(cmds)); return next(ctx, cmds) }
}

// TestRedisWaitingAnswersMet: one Waiting round trip brings each ticket
// with the partners it met, and Met during the pass asks Redis nothing -
// while the answers stay what Redis would say.
func TestRedisWaitingAnswersMet(t *testing.T) {
	ctx := context.Background()
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{testtool.StartRedis(t)}})
	t.Cleanup(func() { _ = rdb.Close() })
	var sent int64
	rdb.AddHook(countHook{&sent})
	s := NewRedisStore(rdb, "met:", RedisOptions{Node: "n"})
	now := time.Now()
	for _, id := range []string{"a", "b"} {
		if err := s.Add(ctx, Ticket{Session: id, Mode: ModeVideo, JoinedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Claim(ctx, "a", "b", now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c"} {
		if err := s.Add(ctx, Ticket{Session: id, Mode: ModeVideo, JoinedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	before := sent
	w, err := s.Waiting(ctx, ModeVideo)
	if err != nil || len(w) != 3 {
		t.Fatalf("Waiting = %v, %v", w, err)
	}
	for _, tc := range []struct {
		a, b string
		want bool
	}{{"a", "b", true}, {"b", "a", true}, {"a", "c", false}, {"c", "b", false}} {
		if got, err := s.Met(ctx, tc.a, tc.b, time.Now()); err != nil || got != tc.want {
			t.Errorf("Met(%s,%s) = %v, %v; want %v", tc.a, tc.b, got, err, tc.want)
		}
	}
	// EVALSHA, and on a fresh server EVAL after NOSCRIPT: at most two.
	if n := sent - before; n > 2 {
		t.Fatalf("Waiting plus four Met sent %d commands, want one script call", n)
	}
}

// Wakes skips a node's own joins (its matcher was poked locally) by the
// name in the payload; a payload without one still wakes.
func TestParseWake(t *testing.T) {
	at := time.Unix(0, 1764500000123456789)
	tests := []struct {
		payload, node string
		ok            bool
	}{
		{wakePayload("vm-1a2b", at), "vm-1a2b", true},
		{wakePayload("", at), "", true},
		{"1764500000123456789", "", true}, // a node of the previous version: no name, still a wake
		{"vm-1a2b soon", "vm-1a2b", false},
		{"", "", false},
	}
	for _, tt := range tests {
		node, sent, ok := parseWake(tt.payload)
		if node != tt.node || ok != tt.ok || ok && !sent.Equal(at) {
			t.Errorf("parseWake(%q) = %q, %v, %v; want %q, %v, %v", tt.payload, node, sent, ok, tt.node, at, tt.ok)
		}
	}
}
