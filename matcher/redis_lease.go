package matcher

// The pairing lease: one node pairs at a time. Taking and keeping the
// lease goes with building the view from the whole queue, checking it
// against the change counter, and sweeping the tickets of dead nodes.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Timings of the pairing lease and of the view's checks.
const (
	// leaseTTL is how long the pairing lease outlives its holder's last
	// renewal; another node takes it after that.
	leaseTTL = 3 * time.Second
	// renewEvery is how often the holder renews the lease, asks Redis
	// how far its change counter is (a missed announcement shows there)
	// and how long the other nodes' heartbeats last.
	renewEvery = time.Second
	// acquireEvery is how often a node that does not hold the lease tries
	// to take it.
	acquireEvery = time.Second
	// subscribeTimeout bounds the subscription's first round trip.
	subscribeTimeout = 2 * time.Second
)

// keepLease renews the lease unless a pass just did; a view found behind
// wakes the pass, which reads the queue again.
func (r *RedisStore) keepLease(ctx context.Context) {
	r.mu.Lock()
	due := r.holder && r.feeds > 0 && r.now().Sub(r.leaseAt) >= renewEvery/2
	r.mu.Unlock()
	if !due {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, renewEvery)
	defer cancel()
	_ = r.renew(ctx) // an error: the next tick or pass tries again
	if r.isHolder() && r.view.needsSync(r.now()) {
		r.wakeAll()
	}
}

// prepare makes the view usable for a pass: the lease taken or kept, the
// view built or rebuilt when it may have missed a change.
func (r *RedisStore) prepare(ctx context.Context) error {
	now := r.now()
	r.mu.Lock()
	holder, leaseAt := r.holder && now.Sub(r.leaseAt) < leaseTTL, r.leaseAt
	if !holder {
		if now.Sub(r.tried) < acquireEvery {
			r.mu.Unlock()
			return ErrNotLeader
		}
		r.tried = now
	}
	r.mu.Unlock()
	if holder && now.Sub(leaseAt) >= renewEvery {
		if err := r.renew(ctx); err != nil {
			return err
		}
	}
	if !r.isHolder() || r.view.needsSync(r.now()) {
		return r.resync(ctx)
	}
	return nil
}

// resync builds the view from the whole queue (and takes the lease).
func (r *RedisStore) resync(ctx context.Context) error {
	epoch := r.view.begin()
	seq, tickets, err := r.read(ctx, []string{ModeVideo, ModeText})
	if err != nil {
		if !errors.Is(err, ErrNotLeader) {
			r.view.abort(epoch)
		}
		return err
	}
	r.view.install(epoch, seq, tickets, r.now())
	return nil
}

// read runs readScript over the modes' queues: the lease, the tickets,
// the change number they stand at.
func (r *RedisStore) read(ctx context.Context, modes []string) (int64, []Ticket, error) {
	keys := []string{r.key("pairer"), r.key("seq")}
	for _, m := range modes {
		keys = append(keys, r.queueKey(m))
	}
	sent := r.now()
	res, err := readScript.Run(ctx, r.pass, keys, r.node, leaseTTL.Milliseconds(), r.key("node")+":").Slice()
	if err != nil {
		return 0, nil, fmt.Errorf("redis waiting: %w", err)
	}
	if n, _ := res[0].(int64); n < 0 {
		r.lostLease()
		return 0, nil, ErrNotLeader
	}
	if len(res) != 4 {
		return 0, nil, fmt.Errorf("redis waiting: unexpected reply %v", res)
	}
	r.tookLease(sent)
	seq, _ := res[0].(int64)
	if n, _ := res[1].(int64); n > 0 {
		r.orphans(int(n))
	}
	ttls, _ := res[2].([]any)
	r.mu.Lock()
	for i := 0; i+1 < len(ttls); i += 2 {
		node, _ := ttls[i].(string)
		ms, _ := ttls[i+1].(int64)
		r.aliveLocked(node, ms, sent)
	}
	r.mu.Unlock()
	rows, _ := res[3].([]any)
	out := make([]Ticket, 0, len(rows)/2)
	for i := 0; i+1 < len(rows); i += 2 {
		k, _ := rows[i].(int64)
		raw, _ := rows[i+1].(string)
		if k < 1 || int(k) > len(modes) {
			return 0, nil, fmt.Errorf("redis waiting: unexpected row %v", rows[i])
		}
		t, err := decodeTicket(raw)
		if err != nil {
			return 0, nil, err
		}
		t.Mode = modes[k-1]
		out = append(out, t)
	}
	return seq, out, nil
}

// renew keeps the lease, checks the view against the change counter and
// learns how long the other nodes' heartbeats last; it drops the tickets
// of nodes found dead.
func (r *RedisStore) renew(ctx context.Context) error {
	// The nodes that own tickets now, and those heard alive before: at a
	// low rate the queue is often empty when the lease is renewed, and a
	// node whose beat was not read would cost every claim of its tickets
	// a check of its own (an EXISTS in claimScript) until the next renew
	// that finds it owning one.
	owners := r.view.ownerNodes(r.node)
	r.mu.Lock()
	for o := range r.alive {
		if !slices.Contains(owners, o) {
			owners = append(owners, o)
		}
	}
	r.mu.Unlock()
	args := make([]any, 0, 3+len(owners))
	args = append(args, r.node, leaseTTL.Milliseconds(), r.key("node")+":")
	for _, o := range owners {
		args = append(args, o)
	}
	sent, at := r.now(), r.view.mark()
	res, err := renewScript.Run(ctx, r.pass, []string{r.key("pairer"), r.key("seq")}, args...).Slice()
	if err != nil {
		return fmt.Errorf("redis lease: %w", err)
	}
	if n, _ := res[0].(int64); n < 0 {
		r.lostLease()
		return ErrNotLeader
	}
	if len(res) != 3 {
		return fmt.Errorf("redis lease: unexpected reply %v", res)
	}
	r.tookLease(sent)
	if held, _ := res[0].(int64); held == 0 {
		// It had lapsed: another node may have paired meanwhile.
		r.view.invalidate()
	}
	seq, _ := res[1].(int64)
	r.view.observe(seq, at, r.now())
	ttls, _ := res[2].([]any)
	var dead []string
	r.mu.Lock()
	for i, o := range owners {
		if i >= len(ttls) {
			break
		}
		ms, _ := ttls[i].(int64)
		if ms == -2 {
			dead = append(dead, o)
			delete(r.alive, o)
			continue
		}
		r.aliveLocked(o, ms, sent)
	}
	r.mu.Unlock()
	if len(dead) > 0 {
		return r.sweep(ctx, dead)
	}
	return nil
}

// aliveLocked records that node's heartbeat had ms to live at sent (-1:
// no expiry, so good for a lease's length).
func (r *RedisStore) aliveLocked(node string, ms int64, sent time.Time) {
	if ms == -1 {
		ms = leaseTTL.Milliseconds()
	}
	if ms >= 0 {
		r.alive[node] = sent.Add(time.Duration(ms) * time.Millisecond)
	}
}

// sweep drops the view's tickets of dead nodes from Redis.
func (r *RedisStore) sweep(ctx context.Context, dead []string) error {
	pairs := r.view.ticketsOf(dead)
	if len(pairs) == 0 {
		return nil
	}
	args := make([]any, 0, 1+len(pairs))
	args = append(args, r.key("node")+":")
	for _, p := range pairs {
		args = append(args, p)
	}
	res, err := sweepScript.Run(ctx, r.pass, append([]string{r.key("seq")}, r.queueKeys("")...), args...).Slice()
	if err != nil {
		return fmt.Errorf("redis sweep: %w", err)
	}
	if len(res) != 2 {
		return fmt.Errorf("redis sweep: unexpected reply %v", res)
	}
	seq, _ := res[0].(int64)
	gone := strs(res[1])
	if len(gone) > 0 {
		if _, others := r.view.change(change{seq: seq, op: opDrop, ids: gone}, r.now()); others {
			r.wakeAll()
		}
		r.orphans(len(gone))
	}
	return nil
}

// isHolder: this node took or kept the lease within its TTL, and has
// not heard since that another node holds it.
func (r *RedisStore) isHolder() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.holder && r.now().Sub(r.leaseAt) < leaseTTL
}

func (r *RedisStore) feedLive() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.feeds > 0
}

func (r *RedisStore) tookLease(sent time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.holder, r.leaseAt = true, sent
}

func (r *RedisStore) lostLease() {
	r.mu.Lock()
	r.holder = false
	r.mu.Unlock()
	r.view.off()
}
