package signal

// Sessions that move between nodes: the resume records each node keeps
// in the store, and adopting on this node a session another node held.

import (
	"context"
	"time"

	"github.com/duetchat/duet/transport"
	"github.com/duetchat/duet/wire"
)

// saved is what a session's last record said; persist writes on change.
// attached is not in the record: losing the socket writes the record
// again, urgent, so a resume on another node finds the newest one.
type saved struct {
	st                        state
	room, peerNode            string
	token, mode               string
	requeue, queued, attached bool
}

// persist writes s's resume record if it changed (h.mu held).
func (h *Hub) persist(s *session) {
	bus := h.opt.Bus
	if !bus.Shared() || s.remote() != nil || h.sessions[s.id] != s {
		return
	}
	now := saved{st: s.state, token: s.token, requeue: s.requeue, queued: s.pend != nil, attached: s.c != nil}
	if s.prefs != nil {
		now.mode = s.prefs.mode
	}
	if s.room != nil {
		now.room, now.peerNode = s.room.code, s.room.other(s).node()
	}
	if now == s.saved {
		return
	}
	s.saved = now
	rec := Record{ID: s.id, Token: s.token, Node: bus.Node(), State: "idle", Self: s.self, Blocked: s.blocked, Urgent: s.c == nil}
	if s.prefs != nil {
		rec.Mode, rec.Interests, rec.Lang = s.prefs.mode, s.prefs.interests, s.prefs.lang
	}
	switch {
	case s.state == stateRoom && s.room != nil:
		rec.Urgent = true
		r := s.room
		peer := r.other(s)
		node := peer.node()
		if node == "" {
			node = bus.Node()
		}
		rec.State = "room"
		rec.Room = &RoomRecord{Code: r.code, Mode: r.mode, Common: r.common, Started: r.started,
			Index: r.index(s), PeerID: peer.id, PeerNode: node, PeerIP: peer.ipHash, PeerSelf: r.self[1-r.index(s)]}
	case s.state == stateWaiting || s.requeue:
		rec.State = "waiting"
	}
	bus.Save(rec)
}

// onMoved: the stranger of one of our rooms resumed on env.Node.
func (h *Hub) onMoved(env Envelope) {
	r := h.rooms[env.Room]
	if r == nil {
		// The room ended while its side was moving: say so, once.
		h.opt.Bus.Publish(env.Node, Envelope{Type: envGone, Room: env.Room, Text: wire.ReasonDisconnected})
		return
	}
	p := r.sideByID(env.From)
	if p == nil {
		return
	}
	if p.remote() == nil {
		// Both sides were ours; the mover is now a proxy.
		h.letGo(p)
	}
	if p.grace != nil {
		p.grace.Stop()
		p.grace = nil
	}
	p.via = h.at(env.Node)
	o := r.other(p)
	if o.remote() == nil {
		h.send(o, wire.RoomMsg{Type: wire.TypePeerResumed, Room: r.code})
		h.persist(o)
	}
}

// letGo forgets a local session that now lives on another node, without
// ending its room or telling its stranger (h.mu held).
func (h *Hub) letGo(s *session) {
	if s.grace != nil {
		s.grace.Stop()
		s.grace = nil
	}
	s.dropGen++
	if c := s.c; c != nil {
		s.c = nil
		c.Abort()
		h.online--
	}
	if s.pend != nil {
		h.dropPending(s.pend)
	}
	h.unregister(s)
}

func (h *Hub) onTakeover(id, node string) {
	s := h.sessions[id]
	if s == nil {
		return
	}
	h.letGo(s)
	if r := s.room; r != nil && node != "" {
		// What reached us while the client was away follows it.
		for _, f := range s.pending {
			h.opt.Bus.Publish(node, Envelope{Type: envFrame, Room: r.code, To: id, Frame: f})
		}
	}
	s.pending = nil
	if r := s.room; r != nil && r.other(s).remote() != nil && h.rooms[r.code] == r {
		delete(h.rooms, r.code) // it lives on between the other two nodes
		h.m.roomEnded(r.mode)
	}
	h.log.Info("session moved to another node", "session", id)
}

// adopt resumes on this node a session whose record names another node
// (h.mu held).
func (h *Hub) adopt(ctx context.Context, c *transport.Conn, ip string, rec Record) (*session, error) {
	tok, err := h.randomID(32)
	if err != nil {
		return nil, err
	}
	bus := h.opt.Bus
	s := &session{
		id: rec.ID, token: tok, ip: ip, ipHash: h.hashIP(ip), c: c, via: here{h},
		limits: newSessionLimits(h.opt.Limits),
		// Its tickets were another node's: any mode may hold one.
		mixedModes: true,
	}
	s.self, s.blocked = rec.Self, rec.Blocked
	if rec.Mode != "" {
		s.prefs = &prefs{mode: rec.Mode, interests: append([]string{}, rec.Interests...), lang: rec.Lang}
	}
	if err := h.register(s); err != nil {
		return nil, err
	}
	bus.Forget(rec.Token)
	h.welcome(s, true)
	switch {
	case rec.State == "room" && rec.Room != nil:
		h.adoptRoom(s, rec)
	case rec.State == "waiting" && s.prefs != nil:
		// A ticket left by a dead node would block the new one.
		h.leave(s.id, "dropping the old ticket")
		h.join(ctx, s)
	default:
		h.send(s, wire.ModeMsg{Type: wire.TypeIdle})
	}
	// After moved: when the old node also holds the stranger, it must turn
	// its side into a proxy before it forgets this one.
	bus.Publish(rec.Node, Envelope{Type: envTakeover, From: s.id, Node: bus.Node()})
	h.m.resumes.Inc()
	h.persist(s)
	h.log.Info("session resumed from another node", "session", s.id, "from", rec.Node)
	return s, nil
}

func (h *Hub) adoptRoom(s *session, rec Record) {
	rr := rec.Room
	if r := h.rooms[rr.Code]; r != nil {
		// The stranger is here: replace our proxy for s with s itself.
		p := r.sideByID(s.id)
		if p == nil || p.remote() == nil {
			h.send(s, wire.ModeMsg{Type: wire.TypeIdle})
			return
		}
		if p.grace != nil {
			p.grace.Stop()
		}
		r.side[r.index(p)] = s
		s.state, s.room = stateRoom, r
		r.ready[r.index(s)], r.buf[r.index(s)], r.bufBytes[r.index(s)] = false, nil, 0
		h.send(s, h.matchedFor(r, s))
		h.send(r.other(s), wire.RoomMsg{Type: wire.TypePeerResumed, Room: r.code})
		h.persist(r.other(s))
		return
	}
	if rr.PeerNode == h.opt.Bus.Node() || rr.Index < 0 || rr.Index > 1 {
		// The stranger was here and the room is gone.
		h.send(s, wire.RoomMsg{Type: wire.TypePeerLeft, Room: rr.Code, Reason: wire.ReasonDisconnected})
		h.send(s, wire.ModeMsg{Type: wire.TypeIdle})
		return
	}
	r := &room{code: rr.Code, mode: rr.Mode, common: append([]string{}, rr.Common...), started: rr.Started}
	r.side[rr.Index] = s
	r.self[rr.Index], r.self[1-rr.Index] = s.self, rr.PeerSelf
	r.side[1-rr.Index] = &session{id: rr.PeerID, ipHash: rr.PeerIP, via: h.at(rr.PeerNode), state: stateRoom, room: r}
	s.state, s.room = stateRoom, r
	h.rooms[r.code] = r
	h.m.roomStarted(r.mode)
	h.opt.Bus.Publish(rr.PeerNode, Envelope{Type: envMoved, Room: r.code, From: s.id, Node: h.opt.Bus.Node()})
	h.send(s, h.matchedFor(r, s))
}

// lookup finds the record of a token this node does not know.
func (h *Hub) lookup(ctx context.Context, token string) (Record, bool) {
	if token == "" || !h.opt.Bus.Shared() {
		return Record{}, false
	}
	h.mu.Lock()
	_, mine := h.tokens[token]
	h.unlock()
	if mine {
		return Record{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	rec, ok, err := h.opt.Bus.Load(ctx, token)
	if err != nil {
		h.log.Warn("resume record lookup failed", "err", err)
		return Record{}, false
	}
	return rec, ok && rec.Node != h.opt.Bus.Node()
}
