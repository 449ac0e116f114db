package matcher

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/duetchat/duet/internal/testtool"
)

// gateHook holds the first pipeline of scripts until released and counts
// such pipelines and their sizes (go-redis's own connection set-up is a
// pipeline too; it is not counted).
type gateHook struct {
	mu      sync.Mutex
	sizes   []int
	first   chan struct{} // closed when the first pipeline is held
	release chan struct{}
}

func (*gateHook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (*gateHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (g *gateHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) == 0 || !strings.HasPrefix(cmds[0].Name(), "eval") {
			return next(ctx, cmds)
		}
		g.mu.Lock()
		g.sizes = append(g.sizes, len(cmds))
		n := len(g.sizes)
		g.mu.Unlock()
		if n == 1 {
			close(g.first)
			<-g.release
		}
		return next(ctx, cmds)
	}
}

// TestAddsShareAPipeline: joins that arrive while a round trip is out go
// together in the next one, and each keeps its own answer: every new
// ticket lands, a second join of a waiting session is refused.
func TestAddsShareAPipeline(t *testing.T) {
	ctx := context.Background()
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{testtool.StartRedis(t)}})
	t.Cleanup(func() { _ = rdb.Close() })
	// Loaded up front, so no NOSCRIPT retry adds a pipeline to the count.
	if err := addScript.Load(ctx, rdb).Err(); err != nil {
		t.Fatal(err)
	}
	g := &gateHook{first: make(chan struct{}), release: make(chan struct{})}
	rdb.AddHook(g)
	s := NewRedisStore(rdb, "batch:", RedisOptions{Node: "n"})

	firstErr := make(chan error, 1)
	go func() { firstErr <- s.Add(ctx, Ticket{Session: "s0", Mode: ModeVideo}) }()
	<-g.first // s0's round trip is out and held

	const n = 40 // s1..s40, then s1 again: all queued behind s0
	errs := make([]error, n+1)
	var wg sync.WaitGroup
	for i := 1; i <= n; i++ {
		wg.Go(func() { errs[i] = s.Add(ctx, Ticket{Session: fmt.Sprintf("s%d", i), Mode: ModeVideo}) })
	}
	waitQueued(t, s.adds, n)
	wg.Go(func() { errs[0] = s.Add(ctx, Ticket{Session: "s1", Mode: ModeText}) })
	waitQueued(t, s.adds, n+1)
	close(g.release)
	wg.Wait()
	if err := <-firstErr; err != nil {
		t.Fatalf("first add: %v", err)
	}
	for i := 1; i <= n; i++ {
		if errs[i] != nil {
			t.Fatalf("add s%d: %v", i, errs[i])
		}
	}
	if !errors.Is(errs[0], ErrAlreadyWaiting) {
		t.Fatalf("second add of s1 = %v, want ErrAlreadyWaiting", errs[0])
	}
	g.mu.Lock()
	sizes := append([]int(nil), g.sizes...)
	g.mu.Unlock()
	if len(sizes) != 2 || sizes[0] != 1 || sizes[1] != n+1 {
		t.Fatalf("pipelines of %v commands, want [1 %d]", sizes, n+1)
	}
	counts, err := s.Counts(ctx)
	if err != nil || counts[ModeVideo] != n+1 || counts[ModeText] != 0 {
		t.Fatalf("counts = %v, %v; want %d video", counts, err, n+1)
	}
}

// TestAddAfterScriptFlush: a server that lost its scripts (a restart, a
// SCRIPT FLUSH) gets them again within the same call.
func TestAddAfterScriptFlush(t *testing.T) {
	ctx := context.Background()
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{testtool.StartRedis(t)}})
	t.Cleanup(func() { _ = rdb.Close() })
	s := NewRedisStore(rdb, "flush:", RedisOptions{Node: "n"})
	for i, id := range []string{"a", "b"} {
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := s.Add(ctx, Ticket{Session: id, Mode: ModeVideo}); err != nil {
			t.Fatalf("add %d after SCRIPT FLUSH: %v", i, err)
		}
	}
	if err := s.Add(ctx, Ticket{Session: "a", Mode: ModeVideo}); !errors.Is(err, ErrAlreadyWaiting) {
		t.Fatalf("re-add = %v, want ErrAlreadyWaiting", err)
	}
}

// TestBatchedAddHonoursItsContext: a caller whose context ends while the
// round trip is out returns at once with that error.
func TestBatchedAddHonoursItsContext(t *testing.T) {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{testtool.StartRedis(t)}})
	t.Cleanup(func() { _ = rdb.Close() })
	g := &gateHook{first: make(chan struct{}), release: make(chan struct{})}
	rdb.AddHook(g)
	s := NewRedisStore(rdb, "ctx:", RedisOptions{Node: "n"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Add(ctx, Ticket{Session: "a", Mode: ModeVideo}) }()
	<-g.first
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("add = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled add waited for the held round trip")
	}
	close(g.release)
}

// waitQueued waits until b holds n calls for its next pipeline.
func waitQueued(t *testing.T, b *batcher, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.mu.Lock()
		got := len(b.queue)
		b.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d calls queued, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}
