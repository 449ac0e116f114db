package matcher

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// scriptCall is one run of a script in a pipeline.
type scriptCall struct {
	keys []string
	args []any
}

// runScripts runs every call of script in one pipeline, one round trip.
// EVALSHA first; the calls a server did not know the script for go again
// as EVAL (only those: the others have run). Each call stays its own
// atomic script, so its outcome is exactly what a lone Run would say;
// errors are read per command.
func runScripts(ctx context.Context, rdb redis.UniversalClient, script *redis.Script, calls []scriptCall) []*redis.Cmd {
	cmds := make([]*redis.Cmd, len(calls))
	todo := make([]int, len(calls))
	for i := range todo {
		todo[i] = i
	}
	for _, sha := range []bool{true, false} {
		pipe := rdb.Pipeline()
		for _, i := range todo {
			if sha {
				cmds[i] = script.EvalSha(ctx, pipe, calls[i].keys, calls[i].args...)
			} else {
				cmds[i] = script.Eval(ctx, pipe, calls[i].keys, calls[i].args...)
			}
		}
		_, _ = pipe.Exec(ctx)
		var again []int
		for _, i := range todo {
			if sha && redis.HasErrorPrefix(cmds[i].Err(), "NOSCRIPT") {
				again = append(again, i)
			}
		}
		if len(again) == 0 {
			break
		}
		todo = again
	}
	return cmds
}

// batcher pipelines the runs of one script that callers make at the same
// time. Nothing waits for a batch to fill: the first caller starts a
// flush at once, and whoever arrives while that round trip is out goes
// in the next one. Under load that is one round trip for many joins
// (fewer syscalls on both ends and Redis parses one packet); alone, a
// call costs one goroutine hand-off more than a direct Run.
type batcher struct {
	rdb    redis.UniversalClient
	script *redis.Script
	max    int
	now    func() time.Time

	mu      sync.Mutex
	queue   []*batchCall
	running bool
}

type batchCall struct {
	ctx  context.Context
	call scriptCall
	then func(*redis.Cmd) // nil, or told the reply even if ctx ended first
	res  *redis.Cmd
	done chan struct{}
}

func newBatcher(rdb redis.UniversalClient, script *redis.Script, max int, now func() time.Time) *batcher {
	return &batcher{rdb: rdb, script: script, max: max, now: now}
}

// run runs one call in the next pipeline and returns its reply. A caller
// whose ctx ends first gets ctx's error; its call may still run, exactly
// as a command whose reply was lost - but then, if set, still hears of
// the reply when it comes (before run returns otherwise).
func (b *batcher) run(ctx context.Context, then func(*redis.Cmd), keys []string, args ...any) *redis.Cmd {
	c := &batchCall{ctx: ctx, call: scriptCall{keys: keys, args: args}, then: then, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, c)
	if !b.running {
		b.running = true
		go b.flushAll()
	}
	b.mu.Unlock()
	select {
	case <-c.done:
		return c.res
	case <-ctx.Done():
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(ctx.Err())
		return cmd
	}
}

// flushAll sends what is queued, batch after batch, and exits when the
// queue is empty: no goroutine while nothing is asked.
func (b *batcher) flushAll() {
	for {
		b.mu.Lock()
		n := min(len(b.queue), b.max)
		batch := b.queue[:n:n]
		b.queue = b.queue[n:]
		if n == 0 {
			b.queue = nil
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		b.flush(batch)
	}
}

func (b *batcher) flush(batch []*batchCall) {
	// The round trip serves every caller, so no one caller's cancellation
	// may cut it short; the client's own timeouts bound it. It ends no
	// later than the latest deadline among the callers.
	ctx := context.WithoutCancel(batch[0].ctx)
	latest, ok := latestDeadline(batch)
	if !ok {
		// A caller without a deadline must not let the round trip wait
		// forever (go-redis's HELLO on a new connection to a stalled
		// Redis has no timeout of its own).
		latest = b.now().Add(maxFlush)
	}
	ctx, cancel := context.WithDeadline(ctx, latest)
	defer cancel()
	calls := make([]scriptCall, len(batch))
	for i, c := range batch {
		calls[i] = c.call
	}
	for i, cmd := range runScripts(ctx, b.rdb, b.script, calls) {
		batch[i].res = cmd
		if batch[i].then != nil {
			batch[i].then(cmd)
		}
		close(batch[i].done)
	}
}

// maxFlush bounds a batch whose callers set no deadline.
const maxFlush = 5 * time.Second

// latestDeadline is the last of the callers' deadlines; false when one
// of them has none.
func latestDeadline(batch []*batchCall) (time.Time, bool) {
	var latest time.Time
	for _, c := range batch {
		d, ok := c.ctx.Deadline()
		if !ok {
			return time.Time{}, false
		}
		if d.After(latest) {
			latest = d
		}
	}
	return latest, true
}
