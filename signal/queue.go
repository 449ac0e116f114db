package signal

// Queueing a session: its ticket into the store and `queued` out, taking
// it back out, and putting tickets back that the store lost.

import (
	"context"
	"errors"
	"time"

	"github.com/duetchat/duet/matcher"
)

// StoreReset re-adds the tickets of every session waiting here: the store
// came back empty (a Redis restart without persistence).
func (h *Hub) StoreReset() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.sessions {
		if !h.rejoinable(s, time.Time{}) {
			continue
		}
		if err := h.rejoin(ctx, s); err != nil {
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
	var ids []string
	for id, s := range h.sessions {
		if h.rejoinable(s, old) {
			ids = append(ids, id)
		}
	}
	h.mu.Unlock()
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		h.mu.Lock()
		if s := h.sessions[id]; s != nil && h.rejoinable(s, old) {
			_ = h.rejoin(ctx, s) // a failure is retried on the next round
		}
		h.mu.Unlock()
	}
}

// rejoinable: s waits here on a ticket joined before (the zero time:
// any ticket), not in the middle of a split match (h.mu held).
func (h *Hub) rejoinable(s *session, before time.Time) bool {
	return s.state == stateWaiting && s.pend == nil && s.c != nil && s.prefs != nil &&
		(before.IsZero() || s.joinedAt.Before(before))
}

// rejoin puts s's current ticket back in the store. Add refuses a ticket
// that is still there, so this is idempotent (h.mu held).
func (h *Hub) rejoin(ctx context.Context, s *session) error {
	err := h.opt.Queue.Join(ctx, s.ticket())
	switch {
	case err == nil:
		h.log.Warn("a waiting session had lost its ticket; queued again", "session", s.id)
	case errors.Is(err, matcher.ErrAlreadyWaiting):
		return nil
	}
	return err
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
		h.joins = append(h.joins, joinJob{s: s, t: t})
		return
	}
	h.joined(s, t, h.opt.Queue.Join(ctx, t))
}

type joinJob struct {
	s *session
	t matcher.Ticket
	// ref: the client asked for this join (queue or next), so the ticket
	// goes in only if the session and its address are not banned.
	ref string
}

// askJoin is a join the client asked for: handleFrame checks bans before
// the ticket goes in (h.mu held, inside handleFrame).
func (h *Hub) askJoin(ctx context.Context, s *session, ref string) {
	h.join(ctx, s)
	if n := len(h.joins); n > 0 && h.joins[n-1].s == s {
		h.joins[n-1].ref = ref
	}
}

// joined finishes a join once the store has answered (h.mu held).
func (h *Hub) joined(s *session, t matcher.Ticket, err error) {
	if h.sessions[s.id] != s || s.state != stateWaiting || !s.joinedAt.Equal(t.JoinedAt) {
		// It moved on meanwhile (a match, a takeover, shutdown). A ticket
		// that landed for a session no longer waiting is withdrawn.
		if err == nil && s.state != stateWaiting && s.state != stateRoom {
			if _, lerr := h.opt.Queue.Leave(context.Background(), s.id); lerr != nil {
				h.log.Warn("withdrawing a late ticket", "session", s.id, "err", lerr)
			}
		}
		return
	}
	if err != nil && !errors.Is(err, matcher.ErrAlreadyWaiting) {
		h.log.Error("queue join failed", "session", s.id, "err", err)
		s.state = stateIdle
		h.sendErr(s, perr(CodeUnavailable, "matching is unavailable right now; try again shortly"), "queue")
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
	h.send(s, modeMsg{Type: "queued", Mode: s.prefs.mode})
}

// runJoins makes the store calls handleFrame deferred, without the lock.
func (h *Hub) runJoins(ctx context.Context, jobs []joinJob) {
	for _, j := range jobs {
		if j.ref != "" && h.refuseBannedJoin(j) {
			continue
		}
		err := h.opt.Queue.Join(ctx, j.t)
		h.mu.Lock()
		h.joined(j.s, j.t, err)
		h.persist(j.s)
		h.mu.Unlock()
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
		h.opt.Bus.Publish(r.other(s).remote, Envelope{Type: envGone, Room: r.code, From: s.id, Text: "stale"})
	}
	if _, err := h.opt.Queue.Leave(ctx, s.id); err != nil {
		h.log.Error("queue leave failed", "session", s.id, "err", err)
	}
	s.state = stateIdle
}
