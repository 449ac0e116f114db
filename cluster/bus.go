// Package cluster links the duet nodes that share one Redis: hub-to-hub
// envelopes over sharded pub/sub (one inbox channel per node) and the
// resume records that let a session continue on any node.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/duetchat/duet/signal"
)

// Options configure a RedisBus.
type Options struct {
	// Node names this process. Required.
	Node string
	// KeyPrefix starts every key and channel ("duet:").
	KeyPrefix string
	// Alive reports whether a node still beats (the matcher store's
	// heartbeat). Required.
	Alive func(ctx context.Context, node string) (bool, error)
	// RecordTTL bounds how long a record outlives a node that died
	// without cleaning up; default 24h.
	RecordTTL time.Duration
	// Queue is how many envelopes and records may wait to be written;
	// past it they are dropped and counted (default 65536).
	Queue int
	// Lag, if set, gets each envelope's publish-to-receive delay.
	Lag    func(d time.Duration)
	Logger *slog.Logger
}

// RedisBus implements signal.Bus on Redis.
type RedisBus struct {
	rdb     redis.UniversalClient
	opt     Options
	out     chan item
	dropped atomic.Int64
	failed  atomic.Int64
}

// item is one queued write: an envelope, a record, or a token to forget.
type item struct {
	node   string
	env    signal.Envelope
	rec    *signal.Record
	forget string
}

// wire is an envelope on the wire, with its send time for the lag figure.
type wire struct {
	Sent int64           `json:"s"`
	Env  signal.Envelope `json:"e"`
}

// New builds a bus; call Run to connect it.
func New(rdb redis.UniversalClient, opt Options) *RedisBus {
	if opt.RecordTTL <= 0 {
		opt.RecordTTL = 24 * time.Hour
	}
	if opt.Queue <= 0 {
		opt.Queue = 1 << 16
	}
	if opt.Lag == nil {
		opt.Lag = func(time.Duration) {}
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	return &RedisBus{rdb: rdb, opt: opt, out: make(chan item, opt.Queue)}
}

// Node implements signal.Bus.
func (b *RedisBus) Node() string { return b.opt.Node }

func (b *RedisBus) inbox(node string) string { return b.opt.KeyPrefix + "inbox:{" + node + "}" }

func (b *RedisBus) recordKey(token string) string { return b.opt.KeyPrefix + "resume:" + token }

func (b *RedisBus) enqueue(it item) {
	select {
	case b.out <- it:
	default:
		b.dropped.Add(1)
	}
}

// Publish implements signal.Bus.
func (b *RedisBus) Publish(node string, env signal.Envelope) { b.enqueue(item{node: node, env: env}) }

// Save implements signal.Bus.
func (b *RedisBus) Save(rec signal.Record) { b.enqueue(item{rec: &rec}) }

// Forget implements signal.Bus.
func (b *RedisBus) Forget(token string) { b.enqueue(item{forget: token}) }

// Load implements signal.Bus.
func (b *RedisBus) Load(ctx context.Context, token string) (signal.Record, bool, error) {
	raw, err := b.rdb.Get(ctx, b.recordKey(token)).Bytes()
	if err == redis.Nil {
		return signal.Record{}, false, nil
	}
	if err != nil {
		return signal.Record{}, false, fmt.Errorf("loading resume record: %w", err)
	}
	var rec signal.Record
	if err := json.Unmarshal(raw, &rec); err != nil {
		return signal.Record{}, false, fmt.Errorf("decoding resume record: %w", err)
	}
	return rec, true, nil
}

// Alive implements signal.Bus.
func (b *RedisBus) Alive(ctx context.Context, node string) (bool, error) {
	return b.opt.Alive(ctx, node)
}

// Ready reports whether this node's inbox subscription is live on Redis:
// after Redis restarts, go-redis subscribes again by itself, and until it
// has, envelopes for this node would be lost.
func (b *RedisBus) Ready(ctx context.Context) error {
	ch := b.inbox(b.opt.Node)
	// PUBSUB SHARDNUMSUB is keyless to go-redis; on a Cluster it must go
	// to the shard that owns the channel's slot.
	cmd := redis.NewMapStringIntCmd(ctx, "pubsub", "shardnumsub", ch)
	cmd.SetFirstKeyPos(2)
	if err := b.rdb.Process(ctx, cmd); err != nil {
		return fmt.Errorf("checking the inbox subscription: %w", err)
	}
	if cmd.Val()[ch] < 1 {
		return errors.New("not subscribed to its inbox on Redis yet")
	}
	return nil
}

// Dropped is how many writes were lost to a full queue or a failed write.
func (b *RedisBus) Dropped() int64 { return b.dropped.Load() + b.failed.Load() }

// Run delivers this node's envelopes to deliver, in order, and writes the
// queued ones, until ctx ends. A lost Redis connection is retried by
// go-redis (it subscribes again by itself); what fails meanwhile is lost
// and counted, as a dropped socket would lose it.
func (b *RedisBus) Run(ctx context.Context, deliver func(signal.Envelope)) error {
	sub := b.rdb.SSubscribe(ctx, b.inbox(b.opt.Node))
	defer sub.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.writeLoop(ctx)
	}()
	msgs := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			<-done
			return ctx.Err()
		case msg, ok := <-msgs:
			if !ok {
				<-done
				return ctx.Err()
			}
			var w wire
			if err := json.Unmarshal([]byte(msg.Payload), &w); err != nil {
				b.opt.Logger.Warn("undecodable envelope", "err", err)
				continue
			}
			b.opt.Lag(time.Since(time.Unix(0, w.Sent)))
			deliver(w.Env)
		}
	}
}

// maxBatch bounds one pipeline.
const maxBatch = 256

func (b *RedisBus) writeLoop(ctx context.Context) {
	batch := make([]item, 0, maxBatch)
	var lastWarn time.Time
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return
		case it := <-b.out:
			batch = append(batch, it)
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case it := <-b.out:
				batch = append(batch, it)
			default:
				break fill
			}
		}
		if err := b.write(ctx, batch); err != nil && ctx.Err() == nil {
			b.failed.Add(int64(len(batch)))
			if time.Since(lastWarn) > 5*time.Second {
				lastWarn = time.Now()
				b.opt.Logger.Warn("writing to Redis failed; envelopes and records lost", "n", len(batch), "err", err)
			}
		}
	}
}

// write sends one batch as one pipeline. A pipeline keeps its commands'
// order per connection, and sharded pub/sub pins a channel to one shard,
// so envelopes for one node arrive in the order they were queued.
func (b *RedisBus) write(ctx context.Context, batch []item) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	pipe := b.rdb.Pipeline()
	now := time.Now().UnixNano()
	for _, it := range batch {
		switch {
		case it.rec != nil:
			raw, err := json.Marshal(it.rec)
			if err != nil {
				return fmt.Errorf("encoding resume record: %w", err)
			}
			pipe.Set(ctx, b.recordKey(it.rec.Token), raw, b.opt.RecordTTL)
		case it.forget != "":
			pipe.Del(ctx, b.recordKey(it.forget))
		default:
			raw, err := json.Marshal(wire{Sent: now, Env: it.env})
			if err != nil {
				return fmt.Errorf("encoding envelope: %w", err)
			}
			pipe.SPublish(ctx, b.inbox(it.node), raw)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redis pipeline: %w", err)
	}
	return nil
}
