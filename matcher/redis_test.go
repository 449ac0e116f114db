package matcher

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	client := func() redis.UniversalClient { return redisClient(t, addr) }
	got := &collector{}
	idle := New(NewRedisStore(client(), "w:", RedisOptions{Node: "a"}), got, Options{})
	worker := New(NewRedisStore(client(), "w:", RedisOptions{Node: "b"}), got, Options{})
	// Let the worker's first (empty) pass finish and its subscription start.
	runSubscribed(t, worker, client(), "w:")
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
type countHook struct{ n *atomic.Int64 }

func (countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(int64(len(cmds))); return next(ctx, cmds) }
}

// parseChange reads what the scripts announce, and refuses anything else
// (a payload of the previous layout's wake-up channel, say).
func TestParseChange(t *testing.T) {
	at := time.Unix(0, 1764500000123456789)
	tests := []struct {
		payload    string
		seq        int64
		op         byte
		node, body string
		ok         bool
	}{
		{"17 a 1764500000123456789 vm-1a2b\n{\"Session\":\"s\"}", 17, 'a', "vm-1a2b", `{"Session":"s"}`, true},
		{"18 r 1764500000123456789 vm-1a2b\ns 1", 18, 'r', "vm-1a2b", "s 1", true},
		{"19 r 1764500000123456789 \ns", 19, 'r', "", "s", true},
		{"vm-1a2b 1764500000123456789", 0, 0, "", "", false}, // the old wake-up
		{"0 a 1764500000123456789 n\n{}", 0, 0, "", "", false},
		{"5 ab 1764500000123456789 n\n{}", 0, 0, "", "", false},
		{"5 a soon n\n{}", 0, 0, "", "", false},
		{"5 a 1764500000123456789 no-newline", 0, 0, "", "", false},
		{"", 0, 0, "", "", false},
	}
	for _, tt := range tests {
		seq, op, sent, node, body, ok := parseChange(tt.payload)
		if ok != tt.ok || ok && (seq != tt.seq || op != tt.op || node != tt.node || body != tt.body || !sent.Equal(at)) {
			t.Errorf("parseChange(%q) = %d %q %v %q %q %v; want %d %q %q %q %v", tt.payload, seq, op, sent, node, body, ok, tt.seq, tt.op, tt.node, tt.body, tt.ok)
		}
	}
}

// TestPassEndsByItsDeadline: a pass against a Redis that answers nothing
// (stalled) gives up after PassTimeout, since every call in it carries
// the pass's deadline (the client must let a context bound its reads).
func TestPassEndsByItsDeadline(t *testing.T) {
	srv := testtool.NewRedis(t)
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr}, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	s := NewRedisStore(rdb, "dl:", RedisOptions{Node: "n"})
	m := New(s, &collector{}, Options{PassTimeout: 300 * time.Millisecond})
	for _, id := range []string{"a", "b"} {
		if err := s.Add(ctx, Ticket{Session: id, Mode: ModeVideo}); err != nil {
			t.Fatal(err)
		}
	}
	stalled := make(chan struct{})
	go func() { srv.Stall(2 * time.Second); close(stalled) }()
	t.Cleanup(func() { <-stalled })
	time.Sleep(50 * time.Millisecond) // the stall is on
	start := time.Now()
	_, err := m.Pass(ctx)
	took := time.Since(start)
	// The read deadline set from the context shows as an i/o timeout.
	if err == nil {
		t.Fatal("pass on a stalled Redis: no error")
	}
	if took > time.Second {
		t.Fatalf("pass on a stalled Redis took %v, want about its 300ms deadline", took)
	}
}

// TestRedisSoleMode: a join marked SoleMode does not look into the other
// modes' queues (no HEXISTS at all, by Redis's own count), while one
// without it is still refused when its session waits in another mode.
func TestRedisSoleMode(t *testing.T) {
	ctx := context.Background()
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{testtool.StartRedis(t)}})
	t.Cleanup(func() { _ = rdb.Close() })
	hexists := func() int {
		t.Helper()
		info, err := rdb.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\n") {
			if rest, ok := strings.CutPrefix(line, "cmdstat_hexists:calls="); ok {
				n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
				return n
			}
		}
		return 0
	}
	s := NewRedisStore(rdb, "sole:", RedisOptions{Node: "n1"})
	if err := s.Add(ctx, Ticket{Session: "a", Mode: ModeText, Interests: []string{}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		t        Ticket
		wantErr  error
		lookedAt bool
	}{
		{"mixed, waiting in text", Ticket{Session: "a", Mode: ModeVideo, Interests: []string{}}, ErrAlreadyWaiting, true},
		{"sole, new session", Ticket{Session: "b", Mode: ModeVideo, Interests: []string{}, SoleMode: true}, nil, false},
		{"mixed, new session", Ticket{Session: "c", Mode: ModeVideo, Interests: []string{}}, nil, true},
	}
	for _, tt := range tests {
		before := hexists()
		if err := s.Add(ctx, tt.t); !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: Add = %v, want %v", tt.name, err, tt.wantErr)
		}
		if looked := hexists() > before; looked != tt.lookedAt {
			t.Errorf("%s: looked into the other queues = %v, want %v", tt.name, looked, tt.lookedAt)
		}
	}
}

// TestRedisStoreReadsItsInjectedClock: the store's times come from
// RedisOptions.Now: a node whose clock runs an hour ahead measures an
// hour of lag on another node's announcement.
func TestRedisStoreReadsItsInjectedClock(t *testing.T) {
	ctx := context.Background()
	addr := testtool.StartRedis(t)
	client := func() redis.UniversalClient { return redisClient(t, addr) }
	var mu sync.Mutex
	var lags []time.Duration
	ahead := func() time.Time { return time.Now().Add(time.Hour) }
	got := &collector{}
	idle := New(NewRedisStore(client(), "c:", RedisOptions{Node: "a"}), got, Options{})
	worker := New(NewRedisStore(client(), "c:", RedisOptions{Node: "b", Now: ahead, PubSubLag: func(d time.Duration) {
		mu.Lock()
		lags = append(lags, d)
		mu.Unlock()
	}}), got, Options{Now: ahead})
	runSubscribed(t, worker, client(), "c:")
	if err := idle.Join(ctx, Ticket{Session: "x", Mode: ModeVideo}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the announcement's lag measured", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(lags) > 0
	})
	mu.Lock()
	defer mu.Unlock()
	if lags[0] < 59*time.Minute || lags[0] > 61*time.Minute {
		t.Errorf("lag on a clock an hour ahead = %v, want about an hour", lags[0])
	}
}

// runSubscribed runs m until t ends and returns once its store listens
// to the announcements of the queue under prefix.
func runSubscribed(t *testing.T, m *Matcher, rdb redis.UniversalClient, prefix string) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done })
	ch := prefix + "{q}:changes"
	eventually(t, 5*time.Second, "matcher subscribed", func() bool {
		n, err := rdb.PubSubNumSub(context.Background(), ch).Result()
		return err == nil && n[ch] == 1
	})
}

// redisClient is a client of the Redis at addr, closed when t ends.
func redisClient(t *testing.T, addr string) redis.UniversalClient {
	c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestRenewReadsNodesHeardBefore: renewing the lease reads the beat of
// every node heard alive before, not only of those owning tickets now,
// so the claims of a node's next tickets need no check of their own; a
// node whose beat is gone is forgotten.
func TestRenewReadsNodesHeardBefore(t *testing.T) {
	ctx := context.Background()
	addr := testtool.StartRedis(t)
	a := NewRedisStore(redisClient(t, addr), "r:", RedisOptions{Node: "a"})
	b := NewRedisStore(redisClient(t, addr), "r:", RedisOptions{Node: "b"})
	// b's join writes its beat; its ticket then leaves the queue.
	if err := b.Add(ctx, Ticket{Session: "x", Mode: ModeVideo, Interests: []string{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Remove(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	long := time.Now().Add(-time.Hour)
	a.mu.Lock()
	a.alive["b"], a.alive["gone"] = long, long
	a.mu.Unlock()
	if err := a.renew(ctx); err != nil {
		t.Fatal(err)
	}
	if u := a.unsure(time.Now(), "b"); len(u) != 0 {
		t.Errorf("after a renew with an empty queue, b is still unsure: %v", u)
	}
	a.mu.Lock()
	_, kept := a.alive["gone"]
	a.mu.Unlock()
	if kept {
		t.Error("a node without a beat is still thought alive")
	}
}
