package signal

// A session's connection lifecycle on this node: a new or resumed
// socket, a drop and its resume grace, the end.

import (
	"context"
	"errors"

	"github.com/duetchat/duet/transport"
	"github.com/duetchat/duet/wire"
)

// attach registers a new socket: a resumed session when token names one,
// otherwise a fresh session. It sends welcome and the session's state.
func (h *Hub) attach(c *transport.Conn, ip, token string) (s *session, err error) {
	ctx := context.Background()
	rec, found := h.lookup(ctx, token)
	h.exclusive(func() { s, err = h.attachLocked(ctx, c, ip, token, rec, found) })
	return s, err
}

// attachLocked resumes, adopts or starts the session for c (h.mu held).
func (h *Hub) attachLocked(ctx context.Context, c *transport.Conn, ip, token string, rec Record, found bool) (*session, error) {
	if token != "" {
		if s := h.tokens[token]; s != nil {
			return s, h.resume(ctx, s, c)
		}
		if found && h.sessions[rec.ID] == nil {
			return h.adopt(ctx, c, ip, rec)
		}
	}
	id, err := h.randomID(16)
	if err != nil {
		return nil, err
	}
	tok, err := h.randomID(32)
	if err != nil {
		return nil, err
	}
	s := &session{
		id: id, token: tok, ip: ip, ipHash: h.hashIP(ip), c: c, via: here{h},
		limits: newSessionLimits(h.opt.Limits),
	}
	if err := h.register(s); err != nil {
		return nil, err
	}
	h.welcome(s, false)
	if token != "" {
		h.sendErr(s, wire.Errorf(wire.CodeBadRequest, "resume token unknown or expired; this is a new session"), "resume")
	}
	h.persist(s)
	h.log.Debug("session started", "session", id, "ip", s.ipHash)
	return s, nil
}

// errTooManySessions: the address has sessions_per_ip live sessions.
var errTooManySessions = errors.New("too many sessions from your address")

// register adds a new session with its socket, within its address's
// session budget (h.mu held).
func (h *Hub) register(s *session) error {
	if !h.ips.AddSession(s.ip, h.opt.Now()) {
		return errTooManySessions
	}
	h.sessions[s.id] = s
	h.tokens[s.token] = s
	h.online++
	if s.self == "" {
		s.self = h.blocks.self("", s.id)
	}
	return nil
}

// unregister forgets a session that ended or moved away (h.mu held).
func (h *Hub) unregister(s *session) {
	delete(h.sessions, s.id)
	delete(h.tokens, s.token)
	h.ips.DropSession(s.ip, h.opt.Now())
}

// resume moves s onto c (h.mu held).
func (h *Hub) resume(ctx context.Context, s *session, c *transport.Conn) error {
	tok, err := h.randomID(32)
	if err != nil {
		return err
	}
	if old := s.c; old != nil {
		// The client noticed the drop before we did: take over quietly.
		s.c = nil
		old.Abort()
	} else {
		h.online++
	}
	if s.grace != nil {
		s.grace.Stop()
		s.grace = nil
	}
	s.dropGen++
	delete(h.tokens, s.token)
	h.opt.Bus.Forget(s.token)
	s.token = tok
	h.tokens[tok] = s
	s.c = c
	h.welcome(s, true)
	pending := s.pending
	s.pending = nil
	switch {
	case s.state == stateRoom:
		r := s.room
		i := r.index(s)
		// Both sides restart ICE now, so what was buffered is stale.
		r.ready[i], r.buf[i], r.bufBytes[i] = false, nil, 0
		h.send(s, h.matchedFor(r, s))
		h.flushFrames(s, pending)
		h.send(r.other(s), wire.RoomMsg{Type: wire.TypePeerResumed, Room: r.code})
		h.restartSFU(r)
	case s.requeue:
		s.requeue = false
		h.flushFrames(s, pending)
		h.join(ctx, s)
	default:
		h.flushFrames(s, pending)
		h.send(s, wire.ModeMsg{Type: wire.TypeIdle})
	}
	h.m.resumes.Inc()
	h.persist(s)
	h.log.Info("session resumed", "session", s.id)
	return nil
}

func (h *Hub) flushFrames(s *session, frames [][]byte) {
	for _, f := range frames {
		s.c.Send(f)
	}
}

// detach is called once a socket's read loop ends. A close frame from the
// client ends the session at once; anything else starts the resume grace.
func (h *Hub) detach(s *session, c *transport.Conn, clientClosed bool) {
	h.exclusive(func() { h.detachLocked(context.Background(), s, c, clientClosed) })
}

func (h *Hub) detachLocked(ctx context.Context, s *session, c *transport.Conn, clientClosed bool) {
	if s.c != c {
		return // a resume already moved the session to another socket
	}
	s.c = nil
	h.online--
	if clientClosed || h.closing && !h.opt.Bus.Shared() {
		// Nowhere to resume once a lone node is gone.
		h.endSession(ctx, s, wire.ReasonDisconnected)
		return
	}
	if s.state == stateWaiting {
		// Nobody may be matched with a ghost: leave now, re-join on resume.
		h.unqueue(ctx, s)
		s.requeue = true
	}
	if r := s.room; r != nil {
		i := r.index(s)
		r.ready[i], r.buf[i], r.bufBytes[i] = false, nil, 0
		h.send(r.other(s), wire.RoomMsg{Type: wire.TypePeerReconnecting, Room: r.code})
	}
	s.dropGen++
	gen := s.dropGen
	s.grace = h.opt.AfterFunc(h.opt.Signal.ResumeGrace, func() { h.expire(s, gen) })
	h.persist(s)
	h.log.Info("session dropped, waiting for resume", "session", s.id, "grace", h.opt.Signal.ResumeGrace)
}

func (h *Hub) expire(s *session, gen int) {
	h.mu.Lock()
	defer h.unlock()
	if s.c != nil || s.dropGen != gen || h.sessions[s.id] != s {
		return
	}
	h.endSession(context.Background(), s, wire.ReasonDisconnected)
}

// endSession forgets s for good (h.mu held).
func (h *Hub) endSession(ctx context.Context, s *session, reason string) {
	h.unqueue(ctx, s)
	h.endRoom(s, reason)
	if s.grace != nil {
		s.grace.Stop()
		s.grace = nil
	}
	h.unregister(s)
	h.opt.Bus.Forget(s.token)
	h.log.Debug("session ended", "session", s.id)
}
