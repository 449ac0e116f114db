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
	"strconv"
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
	Lag func(d time.Duration)
	// Hold bounds how long an envelope that cannot be delivered (Redis
	// away, or no subscriber on the destination's inbox yet) is kept and
	// retried; default 10s. Then it is given to Lost.
	Hold time.Duration
	// Lost, if set, hears of every envelope given up on, so the hub can
	// tell its sender rather than lose it silently.
	Lost func(signal.Envelope)
	// Linger is how long a resume record may wait for a newer one of the
	// same session to replace it before it is written (default and at
	// most maxLinger; negative: write at once). Records of sessions
	// without a socket, and forgets, never wait.
	Linger time.Duration
	// Now is the bus's clock (default time.Now): envelope send times,
	// their lag, the hold-and-retry deadlines and the records' linger.
	Now    func() time.Time
	Logger *slog.Logger
}

// maxLinger bounds Options.Linger: a record in Redis is at most this much
// older than its session's state (plus the queue's own delay). Only a
// resume on another node reads it, and a resume follows a socket drop,
// whose record is written at once; a node that crashes loses what lingers
// as it loses what waits in its queue. 20ms lets a quick waiting → room
// (the room's record, written at once, replaces the waiting one) or a
// short idle → waiting cost one SET, not two (docs/benchmarks.md).
const maxLinger = 20 * time.Millisecond

// RedisBus implements signal.Bus on Redis.
type RedisBus struct {
	rdb     redis.UniversalClient
	opt     Options
	out     chan item
	dropped atomic.Int64
	failed  atomic.Int64
	// src names this process on the wire (node plus a start-time epoch, so
	// a restarted node with a configured name starts a fresh sequence).
	src string
}

// item is one queued write: an envelope, a record, or a token to forget.
type item struct {
	node   string
	env    signal.Envelope
	rec    *signal.Record
	forget string
}

// wire is an envelope on the wire, with its send time for the lag figure
// and its sender's sequence number, which lets a retried envelope be
// recognised and dropped. It goes on a node's inbox channel, which every
// version of duet reads.
type wire struct {
	Sent int64           `json:"s"`
	Src  string          `json:"o,omitempty"`
	Seq  uint64          `json:"q,omitempty"`
	Env  signal.Envelope `json:"e"`
}

// wireMany is several envelopes for one node in one message, on the
// node's batch channel (manyInbox), which only nodes that read this form
// subscribe to: a node of an older version has no subscriber there, so
// the SPUBLISH reaches nobody and the envelopes go again one by one.
type wireMany struct {
	Sent int64     `json:"s"`
	Src  string    `json:"o"`
	Envs []wireOne `json:"m"`
}

type wireOne struct {
	Seq uint64          `json:"q"`
	Env signal.Envelope `json:"e"`
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
	if opt.Hold <= 0 {
		opt.Hold = 10 * time.Second
	}
	if opt.Lost == nil {
		opt.Lost = func(signal.Envelope) {}
	}
	switch {
	case opt.Linger < 0:
		opt.Linger = 0
	case opt.Linger == 0 || opt.Linger > maxLinger:
		opt.Linger = maxLinger
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	src := opt.Node + "@" + strconv.FormatInt(opt.Now().UnixNano(), 36)
	return &RedisBus{rdb: rdb, opt: opt, out: make(chan item, opt.Queue), src: src}
}

// Shared implements signal.Bus: other nodes share this Redis.
func (b *RedisBus) Shared() bool { return true }

// Node implements signal.Bus.
func (b *RedisBus) Node() string { return b.opt.Node }

func (b *RedisBus) inbox(node string) string { return b.opt.KeyPrefix + "inbox:{" + node + "}" }

// manyInbox shares inbox's hash tag, so both live on one shard and one
// subscription connection, which keeps their messages in publish order.
func (b *RedisBus) manyInbox(node string) string { return b.inbox(node) + ":many" }

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

// Alive implements signal.Bus. A node is alive while it beats or while
// its inbox is subscribed: a Redis that restarted empty has lost every
// heartbeat, and the subscription comes back on its own first.
func (b *RedisBus) Alive(ctx context.Context, node string) (bool, error) {
	ok, err := b.opt.Alive(ctx, node)
	if err != nil || ok {
		return ok, err
	}
	n, err := b.subscribers(ctx, b.inbox(node))
	return n > 0, err
}

// Ready reports whether this node's inbox subscription is live on Redis:
// after Redis restarts, go-redis subscribes again by itself, and until it
// has, envelopes for this node would wait.
func (b *RedisBus) Ready(ctx context.Context) error {
	n, err := b.subscribers(ctx, b.inbox(b.opt.Node))
	if err != nil {
		return err
	}
	if n < 1 {
		return errors.New("not subscribed to its inbox on Redis yet")
	}
	return nil
}

// subscribers counts the subscriptions of a sharded channel.
func (b *RedisBus) subscribers(ctx context.Context, ch string) (int64, error) {
	// PUBSUB SHARDNUMSUB is keyless to go-redis; on a Cluster it must go
	// to the shard that owns the channel's slot.
	cmd := redis.NewMapStringIntCmd(ctx, "pubsub", "shardnumsub", ch)
	cmd.SetFirstKeyPos(2)
	if err := b.rdb.Process(ctx, cmd); err != nil {
		return 0, fmt.Errorf("checking the inbox subscription: %w", err)
	}
	return cmd.Val()[ch], nil
}

// Dropped is how many writes were lost to a full queue or a failed write.
func (b *RedisBus) Dropped() int64 { return b.dropped.Load() + b.failed.Load() }

// Run delivers this node's envelopes to deliver, in order, and writes the
// queued ones, until ctx ends. A lost Redis connection is retried by
// go-redis (it subscribes again by itself); what fails meanwhile is lost
// and counted, as a dropped socket would lose it.
func (b *RedisBus) Run(ctx context.Context, deliver func(signal.Envelope)) error {
	many := b.manyInbox(b.opt.Node)
	sub := b.rdb.SSubscribe(ctx, b.inbox(b.opt.Node), many)
	defer sub.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.writeLoop(ctx)
	}()
	msgs := sub.Channel()
	dups := newSeen()
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
			if msg.Channel == many {
				var w wireMany
				if err := json.Unmarshal([]byte(msg.Payload), &w); err != nil {
					b.opt.Logger.Warn("undecodable envelopes", "err", err)
					continue
				}
				for _, e := range w.Envs {
					if dups.first(w.Src, e.Seq) {
						b.opt.Lag(b.opt.Now().Sub(time.Unix(0, w.Sent)))
						deliver(e.Env)
					}
				}
				continue
			}
			var w wire
			if err := json.Unmarshal([]byte(msg.Payload), &w); err != nil {
				b.opt.Logger.Warn("undecodable envelope", "err", err)
				continue
			}
			if !dups.first(w.Src, w.Seq) {
				continue // a retry of what already arrived
			}
			b.opt.Lag(b.opt.Now().Sub(time.Unix(0, w.Sent)))
			deliver(w.Env)
		}
	}
}

// maxBatch bounds one pipeline.
const maxBatch = 256

// retryEvery paces retries of held envelopes while Redis is away or a
// destination has not subscribed again.
const retryEvery = 200 * time.Millisecond

// singleFor is how long a node whose batch channel had no subscriber
// while its inbox had one (an older version) gets single envelopes only,
// before batches are tried again: it may have been upgraded meanwhile.
const singleFor = time.Minute

// finalFlush bounds writing what still lingers once the loop is told to
// stop.
const finalFlush = 500 * time.Millisecond

func (b *RedisBus) writeLoop(ctx context.Context) {
	box := newOutbox(b.opt.Hold)
	recs := newLingering(b.opt.Linger)
	singles := map[string]time.Time{}
	var seq uint64
	var lastWarn time.Time
	retry := time.NewTicker(retryEvery)
	defer retry.Stop()
	due := time.NewTimer(time.Hour)
	due.Stop()
	defer due.Stop()
	defer func() {
		// A node that stops writes the records that still linger, so a
		// session moving off it finds its newest one.
		rest := recs.take(time.Time{}, true)
		for _, it := range b.drain() {
			if it.rec != nil || it.forget != "" {
				rest = append(rest, it)
			}
		}
		if len(rest) == 0 {
			return
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalFlush)
		defer cancel()
		batch := make([]held, len(rest))
		for i, it := range rest {
			batch[i] = held{it: it}
		}
		if _, err := b.write(fctx, batch, singles); err != nil {
			b.failed.Add(int64(len(rest)))
			b.opt.Logger.Warn("resume records not written on the way out", "n", len(rest), "err", err)
		}
	}()
	for {
		var fresh []item
		select {
		case <-ctx.Done():
			return
		case it := <-b.out:
			fresh = append(fresh, it)
		case <-retry.C:
			if box.empty() {
				continue
			}
		case <-due.C:
		}
	fill:
		for len(fresh) < maxBatch {
			select {
			case it := <-b.out:
				fresh = append(fresh, it)
			default:
				break fill
			}
		}
		now := b.opt.Now()
		batch := box.take()
		for _, it := range fresh {
			if it.rec != nil || it.forget != "" {
				recs.add(it, now)
				continue
			}
			seq++
			batch = append(batch, held{it: it, seq: seq, since: now})
		}
		// A pipeline that goes out anyway takes the records that have
		// waited half their linger too: a pipeline of records alone holds
		// up the envelopes queued behind it for a round trip.
		horizon := now
		if len(batch) > 0 {
			horizon = now.Add(b.opt.Linger / 2)
		}
		for _, it := range recs.take(horizon, false) {
			batch = append(batch, held{it: it, since: now})
		}
		if next, ok := recs.next(); ok {
			due.Reset(next.Sub(now))
		}
		if len(batch) == 0 {
			continue
		}
		failed, err := b.write(ctx, batch, singles)
		if ctx.Err() != nil {
			for _, h := range failed {
				if h.it.rec != nil || h.it.forget != "" {
					recs.add(h.it, now) // for the final flush
				}
			}
			return
		}
		for _, h := range failed {
			box.keep(h)
		}
		if n := box.expire(now, b.opt.Lost); n > 0 {
			b.failed.Add(int64(n))
			if b.opt.Now().Sub(lastWarn) > 5*time.Second {
				lastWarn = b.opt.Now()
				b.opt.Logger.Warn("envelopes and records undelivered after the hold; given up", "n", n, "hold", b.opt.Hold, "err", err)
			}
		}
		if len(failed) > 0 && len(fresh) == 0 {
			// Only retries went out: wait for the next tick, not a busy loop.
			select {
			case <-ctx.Done():
				return
			case <-retry.C:
			}
		}
	}
}

// drain empties the queue without waiting.
func (b *RedisBus) drain() []item {
	var out []item
	for {
		select {
		case it := <-b.out:
			out = append(out, it)
		default:
			return out
		}
	}
}

// write sends one batch as one pipeline and returns what must be tried
// again: everything when the pipeline failed (some commands may have
// run: the receiver drops repeats by sequence number), else the
// envelopes no subscriber received. A pipeline keeps its commands' order
// per connection, and sharded pub/sub pins a channel to one shard, so
// envelopes for one node arrive in the order they were queued.
//
// The envelopes of the batch for one node go as one message (plan); a
// batch message nobody received is sent again at once as single
// envelopes, which a node of an older version reads, and that node then
// gets single envelopes for singleFor.
func (b *RedisBus) write(ctx context.Context, batch []held, singles map[string]time.Time) ([]held, error) {
	if len(batch) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	now := b.opt.Now()
	pubs := plan(batch, func(node string) bool {
		until, ok := singles[node]
		if ok && now.After(until) {
			delete(singles, node)
			return false
		}
		return ok
	})
	pipe := b.rdb.Pipeline()
	for _, h := range batch {
		switch it := h.it; {
		case it.rec != nil:
			raw, err := json.Marshal(it.rec)
			if err != nil {
				b.opt.Logger.Error("encoding resume record", "err", err)
				continue
			}
			pipe.Set(ctx, b.recordKey(it.rec.Token), raw, b.opt.RecordTTL)
		case it.forget != "":
			pipe.Del(ctx, b.recordKey(it.forget))
		}
	}
	cmds := b.publish(ctx, pipe, batch, pubs, now)
	if _, err := pipe.Exec(ctx); err != nil {
		return batch, fmt.Errorf("redis pipeline: %w", err)
	}
	again := map[int]bool{}
	var ones []publish // the envelopes of batch messages nobody received
	for i, p := range pubs {
		if cmds[i] == nil || cmds[i].Val() >= 1 {
			continue
		}
		for _, j := range p.idx {
			if len(p.idx) > 1 {
				ones = append(ones, publish{node: p.node, idx: []int{j}})
			} else {
				again[j] = true
			}
		}
	}
	var err error
	if len(ones) > 0 {
		pipe = b.rdb.Pipeline()
		cmds = b.publish(ctx, pipe, batch, ones, now)
		_, err = pipe.Exec(ctx)
		if err != nil {
			err = fmt.Errorf("redis pipeline: %w", err)
		}
		for i, p := range ones {
			if err == nil && cmds[i] != nil && cmds[i].Val() >= 1 {
				singles[p.node] = now.Add(singleFor)
			} else if err != nil || cmds[i] != nil {
				again[p.idx[0]] = true
			}
		}
	}
	// In batch order, which keeps each node's envelopes in theirs.
	var out []held
	for i, h := range batch {
		if again[i] {
			out = append(out, h)
		}
	}
	return out, err
}

// publish adds pubs to pipe: one envelope as a wire on the node's inbox,
// several as a wireMany on its batch channel. A publish whose envelopes
// cannot be encoded (a bug) has a nil command and is dropped.
func (b *RedisBus) publish(ctx context.Context, pipe redis.Pipeliner, batch []held, pubs []publish, now time.Time) []*redis.IntCmd {
	cmds := make([]*redis.IntCmd, len(pubs))
	sent := now.UnixNano()
	for i, p := range pubs {
		var raw []byte
		var err error
		ch := b.inbox(p.node)
		if len(p.idx) == 1 {
			h := batch[p.idx[0]]
			raw, err = json.Marshal(wire{Sent: sent, Src: b.src, Seq: h.seq, Env: h.it.env})
		} else {
			w := wireMany{Sent: sent, Src: b.src, Envs: make([]wireOne, len(p.idx))}
			for k, j := range p.idx {
				w.Envs[k] = wireOne{Seq: batch[j].seq, Env: batch[j].it.env}
			}
			raw, err = json.Marshal(w)
			ch = b.manyInbox(p.node)
		}
		if err != nil {
			b.opt.Logger.Error("encoding envelopes", "node", p.node, "n", len(p.idx), "err", err)
			continue
		}
		cmds[i] = pipe.SPublish(ctx, ch, raw)
	}
	return cmds
}
