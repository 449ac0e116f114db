package matcher

// Tickets in and out of the shared queue: a join, a leave, the counts,
// and how a ticket is stored (node "\n" JSON).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// maxAddBatch bounds one pipeline of joins.
const maxAddBatch = 128

// Add implements Store. Joins made at the same moment (a burst of Next
// presses) share one pipeline; each is still its own atomic script.
func (r *RedisStore) Add(ctx context.Context, t Ticket) error {
	if !ValidMode(t.Mode) {
		return fmt.Errorf("redis add: invalid mode %q", t.Mode)
	}
	t.Node = r.node
	t.JoinedAt = t.JoinedAt.Round(0) // as the JSON has it
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encoding ticket: %w", err)
	}
	sent := r.now()
	// The heartbeat is what keeps a ticket from being taken for a ghost;
	// Run writes it every third of its TTL, and a join does too when no
	// write landed for that long (before the first beat, say).
	writeNode := sent.UnixNano()-r.nodeAt.Load() > int64(r.ttl/3)
	// Without SoleMode, addScript refuses a session already waiting in
	// another mode's queue; with it those queues are left out.
	queues := []string{r.queueKey(t.Mode)}
	if !t.SoleMode {
		queues = r.queueKeys(t.Mode)
	}
	keys := append([]string{r.key("seq"), r.key("changes"), r.key("node", r.node)}, queues...)
	// The view hears of the join from the reply, even when ctx ends
	// before it comes: a change it never hears of costs a full read.
	then := func(cmd *redis.Cmd) {
		seq, err := cmd.Int64()
		if err != nil || seq == 0 {
			return
		}
		if writeNode {
			r.nodeAt.Store(sent.UnixNano())
		}
		// This join's own add needs no wake-up (Join pokes the matcher);
		// adds it released from behind a gap do.
		if _, others := r.view.change(change{seq: seq, op: opAdd, t: t}, r.now()); others {
			r.wakeAll()
		}
	}
	seq, err := r.adds.run(ctx, then, keys,
		t.Session, r.node+"\n"+string(b), flag(!r.isHolder()), flag(writeNode), r.ttl.Milliseconds(), sent.UnixNano()).Int64()
	if err != nil {
		return fmt.Errorf("redis add: %w", err)
	}
	if seq == 0 {
		return ErrAlreadyWaiting
	}
	return nil
}

// Remove implements Store.
func (r *RedisStore) Remove(ctx context.Context, session string) (bool, error) {
	keys := append([]string{r.key("seq"), r.key("changes")}, r.queueKeys("")...)
	seq, err := removeScript.Run(ctx, r.rdb, keys, session, flag(!r.isHolder()), r.now().UnixNano(), r.node).Int64()
	if err != nil {
		return false, fmt.Errorf("redis remove: %w", err)
	}
	if seq == 0 {
		return false, nil
	}
	if _, others := r.view.change(change{seq: seq, op: opRemove, ids: []string{session}}, r.now()); others {
		r.wakeAll()
	}
	return true, nil
}

// decodeTicket reads a queue value: node "\n" JSON.
func decodeTicket(raw string) (Ticket, error) {
	node, body, _ := strings.Cut(raw, "\n")
	var t Ticket
	if err := json.Unmarshal([]byte(body), &t); err != nil {
		return Ticket{}, fmt.Errorf("decoding ticket: %w", err)
	}
	t.Node = node
	return t, nil
}

// Counts implements Store.
func (r *RedisStore) Counts(ctx context.Context) (map[string]int, error) {
	pipe := r.rdb.Pipeline()
	v := pipe.HLen(ctx, r.queueKey(ModeVideo))
	t := pipe.HLen(ctx, r.queueKey(ModeText))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("redis counts: %w", err)
	}
	return map[string]int{ModeVideo: int(v.Val()), ModeText: int(t.Val())}, nil
}
