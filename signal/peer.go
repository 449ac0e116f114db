package signal

// The other side of a room. A room's stranger either holds a socket on
// this node or lives on another node; the hub reaches both through one
// small interface, peer, so chat, room events, P2P signals and the SFU's
// signals all take one path (relay), and "deliver if ready, else hold"
// exists once (hold), on the node that holds the stranger's socket.

import "github.com/duetchat/duet/wire"

// peer is how this node reaches a session: the socket here, or the node
// that holds it. Both run with h.mu held and must not block.
type peer interface {
	// pass hands f to s. A held frame waits for s's `ready` in its room;
	// the error is what the sender of a refused frame is told (nil when
	// the refusal, if any, is told on another node).
	pass(s *session, f outFrame) *wire.Error
	// ended tells s that its stranger `from` ended their room r.
	ended(s *session, r *room, from, reason string)
}

// outFrame is one frame on its way to a session.
type outFrame struct {
	b []byte
	// held: an offer, answer or candidate, which waits for `ready`.
	held bool
	// from is the client that sent it, answered too_large when the hold is
	// full; "" for what the node says itself (the SFU's signals), which is
	// never refused.
	from string
	ref  string // the sender's message type, for its errors
}

// relay hands f to s wherever s lives (h.mu held).
func (h *Hub) relay(s *session, f outFrame) *wire.Error { return s.via.pass(s, f) }

// here reaches the sessions whose socket is on this node.
type here struct{ h *Hub }

func (p here) pass(s *session, f outFrame) *wire.Error {
	if f.held && s.room != nil {
		return p.h.hold(s.room, s.room.index(s), f)
	}
	p.h.sendFrame(s, f.b)
	return nil
}

func (p here) ended(s *session, r *room, _, reason string) {
	p.h.send(s, wire.RoomMsg{Type: wire.TypePeerLeft, Room: r.code, Reason: reason})
	p.h.persist(s)
}

// hold is the one hold-until-ready path: side i of r gets f at once if it
// is ready and connected, otherwise f waits for its `ready`, within the
// limits when a client sent it (h.mu held).
func (h *Hub) hold(r *room, i int, f outFrame) *wire.Error {
	to := r.side[i]
	if r.ready[i] && to.c != nil {
		to.c.Send(f.b)
		return nil
	}
	l := h.opt.Limits
	if f.from != "" && (len(r.buf[i]) >= l.MaxBufferedSignals || r.bufBytes[i]+len(f.b) > l.MaxBufferedBytes) {
		return errHoldFull
	}
	r.buf[i] = append(r.buf[i], f.b)
	r.bufBytes[i] += len(f.b)
	return nil
}

var errHoldFull = wire.Errorf(wire.CodeTooLarge, "the stranger is not ready and too many signals are waiting for them")

// sendFrame hands s a frame now, or keeps it for its resume.
func (h *Hub) sendFrame(s *session, frame []byte) {
	if s.c != nil {
		s.c.Send(frame)
		return
	}
	if len(s.pending) < maxPending {
		s.pending = append(s.pending, frame)
	}
}

// nodePeer reaches a stranger on another node: what is sent to it goes to
// its node over the bus, whose copy of the room holds it until `ready`.
type nodePeer struct {
	h    *Hub
	name string // the node
	down bool   // the node stopped beating
}

func (h *Hub) at(node string) *nodePeer { return &nodePeer{h: h, name: node} }

func (p *nodePeer) pass(s *session, f outFrame) *wire.Error {
	env := Envelope{Type: envFrame, To: s.id, Frame: f.b}
	if s.room != nil {
		env.Room = s.room.code
	}
	if f.held {
		// The stranger's node answers a full hold to the sender itself.
		env.Type, env.From, env.Ref = envSignal, f.from, f.ref
	}
	p.h.opt.Bus.Publish(p.name, env)
	return nil
}

func (p *nodePeer) ended(s *session, r *room, from, reason string) {
	p.h.opt.Bus.Publish(p.name, Envelope{Type: envGone, Room: r.code, From: from, Text: reason})
}

// remote is the node that holds s, nil when s is on this node.
func (s *session) remote() *nodePeer {
	p, _ := s.via.(*nodePeer)
	return p
}

// onRemoteSignal: a signal from the other node for our side of a room
// takes our hold; a refusal goes back to the sender through its node.
func (h *Hub) onRemoteSignal(to *session, env Envelope) {
	e := h.relay(to, outFrame{b: env.Frame, held: true, from: env.From, ref: env.Ref})
	if from := to.room.other(to).remote(); e != nil && from != nil {
		h.opt.Bus.Publish(from.name, Envelope{Type: envError, To: env.From, Code: e.Code, Text: e.Msg, Ref: env.Ref})
	}
}

// callOff tells the other node of a split match that ours will not take
// it after all (h.mu held).
func (h *Hub) callOff(r *room, s *session) {
	if p := r.other(s).remote(); p != nil {
		h.opt.Bus.Publish(p.name, Envelope{Type: envGone, Room: r.code, From: s.id, Text: "stale"})
	}
}

// node names the node that holds s: "" for this one.
func (s *session) node() string {
	if p := s.remote(); p != nil {
		return p.name
	}
	return ""
}
