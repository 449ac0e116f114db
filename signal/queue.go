package signal

// Queueing a session: its ticket into the store and `queued` out, taking
// it back out, and putting tickets back that the store lost.

import (
	"context"
	"errors"
	"time"

	"github.com/duetchat/duet/matcher"
	"github.com/duetchat/duet/wire"
)

// StoreReset re-adds the tickets of every session waiting here: the store
// came back empty (a Redis restart without persistence). The tickets are
// gathered under the lock and added after it.
func (h *Hub) StoreReset() {
	h.mu.Lock()
	var tickets []matcher.Ticket
	for _, s := range h.sessions {
		if h.rejoinable(s, time.Time{}) {
			tickets = append(tickets, s.ticket())
		}
	}
	h.unlock()
	for _, t := range tickets {
		if err := h.rejoin(t); err != nil {
			h.log.Warn("re-queueing after a store reset failed", "err", err)
			return // the store is still out; its next reset tries again
		}
	}
}

// staleWait is how long a session waits before its node checks that its
// ticket is still in the store: a claim whose reply was lost, or an
// envelope lost to a Redis outage, must not leave anyone waiting forever.
const staleWait = 30 * time.Second

// requeueStale re-adds the tickets of sessions that have waited longer
// than staleWait, one at a time so no single pass holds the hub for long.
// One that was claimed but not yet notified is caught by the liveness
// check when its match arrives.
func (h *Hub) requeueStale(ctx context.Context) {
	h.mu.Lock()
	old := h.opt.Now().Add(-staleWait)
	var tickets []matcher.Ticket
	for _, s := range h.sessions {
		if h.rejoinable(s, old) {
			tickets = append(tickets, s.ticket())
		}
	}
	h.unlock()
	for _, t := range tickets {
		if ctx.Err() != nil {
			return
		}
		// A session that left meanwhile may get its ticket back; its match
		// is caught as stale when it comes (openLocal's liveness check).
		_ = h.rejoin(t) // a failure is retried on the next round
	}
}

// rejoinable: s waits here on a ticket joined before (the zero time:
// any ticket), not in the middle of a split match (h.mu held).
func (h *Hub) rejoinable(s *session, before time.Time) bool {
	return s.state == stateWaiting && s.pend == nil && s.c != nil && s.prefs != nil &&
		(before.IsZero() || s.joinedAt.Before(before))
}

// rejoin puts a waiting session's ticket back in the store. Add refuses a
// ticket that is still there, so this is idempotent (h.mu not held).
func (h *Hub) rejoin(t matcher.Ticket) error {
	ctx, cancel := storeCtx()
	defer cancel()
	err := h.opt.Queue.Join(ctx, t)
	switch {
	case err == nil:
		h.log.Warn("a waiting session had lost its ticket; queued again", "session", t.Session)
	case errors.Is(err, matcher.ErrAlreadyWaiting):
		return nil
	}
	return err
}

// requeue puts a live side's ticket back after a match fell through,
// once the lock is released (h.mu held).
func (h *Hub) requeue(t matcher.Ticket, failure string) {
	h.later(t.Session, func() {
		ctx, cancel := storeCtx()
		defer cancel()
		if err := h.opt.Queue.Join(ctx, t); err != nil && !errors.Is(err, matcher.ErrAlreadyWaiting) {
			h.log.Error(failure, "session", t.Session, "err", err)
		}
	})
}

// leave takes a session's ticket out of the store once the lock is
// released (h.mu held).
func (h *Hub) leave(id, failure string) {
	h.later(id, func() {
		ctx, cancel := storeCtx()
		defer cancel()
		if _, err := h.opt.Queue.Leave(ctx, id); err != nil {
			h.log.Warn(failure, "session", id, "err", err)
			return
		}
		h.health.ok()
	})
}

// join queues s with its preferences and answers `queued`.
//
// Inside handleFrame the store call is made after the hub lock is
// released (a remote store's round trip must not hold every session of
// the node): the session is waiting from now on, and `queued` goes out
// when the store has the ticket - or just before `matched`, should the
// match be quicker than the answer.
func (h *Hub) join(ctx context.Context, s *session) {
	if s.prefs == nil {
		s.prefs = &prefs{mode: matcher.ModeVideo, interests: []string{}}
	}
	s.joinedAt = h.opt.Now()
	s.state = stateWaiting
	t := s.ticket()
	if h.deferring {
		h.joins = append(h.joins, joinJob{s: s, t: t, by: h.opt.Now().Add(answerWithin)})
		return
	}
	by := h.opt.Now().Add(answerWithin)
	h.later(s.id, func() { h.runJoins(ctx, []joinJob{{s: s, t: t, by: by}}) })
}

type joinJob struct {
	s *session
	t matcher.Ticket
	// by is when the client should have its answer while the store is
	// silent: answerWithin after it asked, however long the session's
	// earlier store calls took.
	by time.Time
	// ref: the client asked for this join (queue or next), so the ticket
	// goes in only if the session and its address are not banned (and,
	// with a Gate, have paid: pow is the solution the client sent).
	ref string
	pow string
}

// askJoin is a join the client asked for: handleFrame checks bans before
// the ticket goes in (h.mu held, inside handleFrame).
func (h *Hub) askJoin(ctx context.Context, s *session, ref, pow string) {
	h.join(ctx, s)
	if n := len(h.joins); n > 0 && h.joins[n-1].s == s {
		h.joins[n-1].ref = ref
		h.joins[n-1].pow = pow
	}
}

// joined finishes a join once the store has answered (h.mu held).
func (h *Hub) joined(s *session, t matcher.Ticket, err error) {
	if h.sessions[s.id] != s || s.state != stateWaiting || !s.joinedAt.Equal(t.JoinedAt) {
		// It moved on meanwhile (a match, a takeover, shutdown). A ticket
		// that landed for a session no longer waiting is withdrawn.
		if err == nil && s.state != stateWaiting && s.state != stateRoom {
			h.leave(s.id, "withdrawing a late ticket")
		}
		return
	}
	if err != nil && !errors.Is(err, matcher.ErrAlreadyWaiting) {
		h.log.Error("queue join failed", "session", s.id, "err", err)
		s.state = stateIdle
		h.sendErr(s, wire.Errorf(wire.CodeUnavailable, "matching is unavailable right now; try again shortly"), "queue")
		return
	}
	h.confirmQueued(s)
}

// confirmQueued sends `queued` for the current ticket, once.
func (h *Hub) confirmQueued(s *session) {
	if s.prefs == nil || s.queuedFor.Equal(s.joinedAt) {
		return
	}
	s.queuedFor = s.joinedAt
	h.send(s, wire.ModeMsg{Type: wire.TypeQueued, Mode: s.prefs.mode})
}

// runJoins makes the store calls handleFrame deferred, without the lock,
// each bounded by storeTimeout so a client always hears back.
func (h *Hub) runJoins(ctx context.Context, jobs []joinJob) {
	for _, j := range jobs {
		if j.ref != "" && (h.refuseBannedJoin(j) || h.refuseUnpaidJoin(j)) {
			continue
		}
		err, late := h.storeJoin(ctx, j.t, j.by)
		h.exclusive(func() {
			h.joined(j.s, j.t, err)
			h.persist(j.s)
		})
		if late != nil {
			// The client has its answer; should the ticket land after
			// all, joined withdraws it.
			h.spawn(func() {
				err := <-late
				h.mu.Lock()
				h.joined(j.s, j.t, err)
				h.unlock()
			})
		}
	}
}

// unqueue takes s out of the queue if it is waiting.
func (h *Hub) unqueue(ctx context.Context, s *session) {
	if s.state != stateWaiting {
		return
	}
	if r := s.pend; r != nil {
		// Claimed by a split match that has not opened: call it off.
		h.dropPending(r)
		h.callOff(r, s)
	}
	h.leave(s.id, "queue leave failed")
	s.state = stateIdle
}
