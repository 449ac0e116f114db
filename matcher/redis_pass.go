package matcher

// What a pairing pass asks of the RedisStore: who waits (from the view
// while this node pairs), whether a pair met, and the claims, which
// are the pass's only round trip.

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// Waiting implements Store. On the node that pairs, with its view built,
// it asks Redis nothing (but for the lease, once a second): the view is
// the queue. ErrNotLeader on the others. Without announcements (no Run
// of a Matcher on this store yet) every call reads the mode's queue.
func (r *RedisStore) Waiting(ctx context.Context, mode string) ([]Ticket, error) {
	if r.feedLive() {
		if err := r.prepare(ctx); err != nil {
			return nil, err
		}
		if r.view.live() {
			return r.view.tickets(mode), nil
		}
		// Dropped while it was being built (a reset came meanwhile): this
		// pass reads; the next one builds it again.
	}
	_, tickets, err := r.read(ctx, []string{mode})
	return tickets, err
}

// Claim implements Store.
func (r *RedisStore) Claim(ctx context.Context, a, b string, now, metUntil time.Time) error {
	return r.ClaimBatch(ctx, [][2]string{{a, b}}, now, metUntil)[0]
}

// errMet: a claim refused because the pair met (and the caller did not
// know): the claim is lost, and the pair known from then on.
var errMet = fmt.Errorf("%w: the pair met recently", ErrNotWaiting)

// ClaimBatch implements BatchClaimer: every claim of a pass in one
// pipeline, one round trip. Each is still its own atomic script, so the
// outcome per pair is exactly what Claim would have said; the view
// learns from each (who went, who was gone already, who had met).
func (r *RedisStore) ClaimBatch(ctx context.Context, pairs [][2]string, now, metUntil time.Time) []error {
	window := max(metUntil.Sub(now).Milliseconds(), 0)
	calls := make([]scriptCall, len(pairs))
	wall := r.now()
	for i, p := range pairs {
		mode, ownerA, _ := r.view.modeAndOwner(p[0])
		_, ownerB, _ := r.view.modeAndOwner(p[1])
		keys := append([]string{r.key("seq"), r.pairKey(p[0], p[1])}, r.queueKeys(mode)...)
		// Met said yes and the matcher chose them anyway: a repeat the
		// rules allow.
		repeat := window > 0 && r.memo.met(p[0], p[1], now)
		args := []any{p[0], p[1], metUntil.UnixMilli(), window, now.UnixMilli(), flag(repeat), r.key("node") + ":"}
		for _, o := range r.unsure(wall, ownerA, ownerB) {
			args = append(args, o)
		}
		calls[i] = scriptCall{keys: keys, args: args}
	}
	out := make([]error, len(pairs))
	lost := false
	for i, cmd := range runScripts(ctx, r.pass, claimScript, calls) {
		a, b := pairs[i][0], pairs[i][1]
		res, err := cmd.Slice()
		if err != nil {
			out[i] = fmt.Errorf("redis claim: %w", err)
			continue
		}
		code, _ := res[0].(int64)
		switch {
		case code == 1:
			r.view.claimed(a, b)
			r.memo.add(a, b, metUntil, now)
		case code == 0 && len(res) == 4:
			seq, _ := res[3].(int64)
			for k, id := range []string{a, b} {
				if has, _ := res[1+k].(int64); has == 0 {
					r.view.gone(id, seq)
				}
			}
			out[i], lost = ErrNotWaiting, true
		case code == 2 && len(res) == 2:
			until, _ := strconv.ParseInt(fmt.Sprint(res[1]), 10, 64)
			r.memo.add(a, b, time.UnixMilli(until), now)
			out[i], lost = errMet, true
		case code == 3 && len(res) == 3:
			seq, _ := res[1].(int64)
			ghosts := strs(res[2])
			r.view.change(change{seq: seq, op: opDrop, ids: ghosts}, r.now()) // lost claims wake below
			r.orphans(len(ghosts))
			out[i], lost = ErrNotWaiting, true
		case code == 4:
			out[i] = ErrNotWaiting
		default:
			out[i] = fmt.Errorf("redis claim: unexpected reply %v", res)
		}
	}
	if lost {
		// The view has learned; the strangers of a lost claim need not
		// wait for the pass after next.
		r.wakeAll()
	}
	return out
}

// unsure lists the nodes among owners (other than this one, known) whose
// heartbeat this node cannot vouch for at now: the claim checks them.
func (r *RedisStore) unsure(now time.Time, owners ...string) []string {
	var out []string
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range owners {
		if o == "" || o == r.node || now.Before(r.alive[o]) {
			continue
		}
		if len(out) == 0 || out[0] != o {
			out = append(out, o)
		}
	}
	return out
}

// Met implements Store: from what this node knows while it pairs (a pair
// it does not know is refused by the claim, and then known), else from
// Redis.
func (r *RedisStore) Met(ctx context.Context, a, b string, now time.Time) (bool, error) {
	if r.view.live() {
		return r.memo.met(a, b, now), nil
	}
	until, err := metScript.Run(ctx, r.pass, []string{r.pairKey(a, b)}, now.UnixMilli()).Int64()
	if err != nil {
		return false, fmt.Errorf("redis met: %w", err)
	}
	if until == 0 {
		return false, nil
	}
	// Remembered so that a claim of this pair, if the matcher makes one,
	// is the repeat it chose.
	r.memo.add(a, b, time.UnixMilli(until), now)
	return true, nil
}
