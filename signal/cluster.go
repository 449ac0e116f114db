package signal

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/duetchat/duet/matcher"
	"github.com/duetchat/duet/moderation"
	"github.com/duetchat/duet/wire"
)

// pendingTimeout bounds how long one side of a split match waits for the
// other node's answer before it goes back to the queue.
const pendingTimeout = 5 * time.Second

func (h *Hub) local(node string) bool {
	return node == "" || node == h.opt.Bus.Node()
}

// Matched implements matcher.Notifier: it opens the room, or puts back the
// live side when the other is gone (cancelled, dropped, or re-queued since).
// A pair whose sides live on other nodes is handed to those nodes.
func (h *Hub) Matched(m matcher.Match) {
	h.exclusive(func() { h.matched(m) })
}

// MatchedAll implements matcher.BatchNotifier: one lock for a whole pass.
func (h *Hub) MatchedAll(ms []matcher.Match) {
	h.exclusive(func() {
		for _, m := range ms {
			h.matched(m)
		}
	})
}

func (h *Hub) matched(m matcher.Match) {
	switch {
	case h.local(m.A.Node) && h.local(m.B.Node):
		h.openLocal(m)
	case m.A.Node == m.B.Node:
		h.opt.Bus.Publish(m.A.Node, Envelope{Type: envPair, Match: &m})
	default:
		for i, t := range []matcher.Ticket{m.A, m.B} {
			if h.local(t.Node) {
				h.matchSide(m, i)
			} else {
				h.opt.Bus.Publish(t.Node, Envelope{Type: envMatch, Match: &m, Side: i})
			}
		}
	}
}

func sides(m matcher.Match, i int) (mine, theirs matcher.Ticket) {
	if i == 0 {
		return m.A, m.B
	}
	return m.B, m.A
}

// matchSide takes this node's side of a match split over two nodes. The
// room opens only once both nodes have said their side is live, so a
// stranger is never told "matched" with a ghost (h.mu held).
func (h *Hub) matchSide(m matcher.Match, i int) {
	mine, theirs := sides(m, i)
	s := h.sessions[mine.Session]
	if !h.live(s, mine) {
		h.m.staleMatches.Inc()
		h.opt.Bus.Publish(theirs.Node, Envelope{Type: envGone, Room: m.Room, From: mine.Session, Text: "stale"})
		return
	}
	r := &room{
		code: m.Room, mode: m.Mode, common: append([]string{}, m.Common...),
		started: h.opt.Now(), ticket: mine,
	}
	r.side[i] = s
	r.side[1-i] = &session{id: theirs.Session, ipHash: theirs.IPHash, via: h.at(theirs.Node), state: stateRoom, room: r}
	r.self[i], r.self[1-i] = mine.Self, theirs.Self
	s.pend = r
	h.pending[r.code] = r
	h.opt.Bus.Publish(theirs.Node, Envelope{Type: envAccept, Room: r.code, From: mine.Session})
	switch early := h.early[r.code]; early {
	case envAccept:
		delete(h.early, r.code)
		h.openPending(r)
	case envGone:
		delete(h.early, r.code)
		h.abortPending(r, false)
	default:
		code := r.code
		r.timer = h.opt.AfterFunc(pendingTimeout, func() {
			h.mu.Lock()
			defer h.unlock()
			if h.pending[code] == r {
				h.log.Warn("no answer from the stranger's node; back to the queue", "room", code)
				h.abortPending(r, true)
			}
		})
	}
}

func (r *room) localSide() *session {
	if r.side[0].remote() == nil {
		return r.side[0]
	}
	return r.side[1]
}

// side finds the side with session id; "" matches the remote side.
func (r *room) sideByID(id string) *session {
	for _, p := range r.side {
		if p.id == id || (id == "" && p.remote() != nil) {
			return p
		}
	}
	return nil
}

func (h *Hub) dropPending(r *room) {
	delete(h.pending, r.code)
	if r.timer != nil {
		r.timer.Stop()
	}
	if s := r.localSide(); s.pend == r {
		s.pend = nil
	}
}

// openPending: both sides are live; tell ours.
func (h *Hub) openPending(r *room) {
	s := r.localSide()
	if s.pend != r || h.sessions[s.id] != s || s.state != stateWaiting {
		// Ours moved on meanwhile (it cannot hold two rooms).
		h.dropPending(r)
		h.callOff(r, s)
		return
	}
	h.dropPending(r)
	h.confirmQueued(s)
	s.state = stateRoom
	s.room = r
	h.rooms[r.code] = r
	h.send(s, h.matchedFor(r, s))
	h.m.roomStarted(r.mode)
	h.persist(s)
}

// abortPending: the other side never took the room; ours goes back to the
// queue on its original ticket, without having been told anything.
func (h *Hub) abortPending(r *room, tell bool) {
	h.dropPending(r)
	s := r.localSide()
	if tell {
		h.callOff(r, s)
	}
	if h.sessions[s.id] != s || s.state != stateWaiting || s.c == nil {
		return
	}
	t := r.ticket
	h.later(s.id, func() {
		ctx, cancel := storeCtx()
		err := h.opt.Queue.Join(ctx, t)
		cancel()
		if err == nil || errors.Is(err, matcher.ErrAlreadyWaiting) {
			return
		}
		h.log.Error("re-queue after a lost match failed", "session", s.id, "err", err)
		h.mu.Lock()
		defer h.unlock()
		if h.sessions[s.id] == s && s.state == stateWaiting && s.pend == nil && s.joinedAt.Equal(t.JoinedAt) {
			s.state = stateIdle
			h.sendErr(s, wire.Errorf(wire.CodeUnavailable, "matching is unavailable right now; try again shortly"), "queue")
			h.persist(s)
		}
	})
}

// remember keeps an answer that overtook its match, for a while.
func (h *Hub) remember(code, what string) {
	if _, ok := h.early[code]; ok {
		return
	}
	h.early[code] = what
	h.opt.AfterFunc(2*pendingTimeout, func() {
		h.mu.Lock()
		defer h.unlock()
		delete(h.early, code)
	})
}

// Deliver handles one envelope from another node.
func (h *Hub) Deliver(env Envelope) {
	if env.Type == envFrame || env.Type == envSignal {
		h.deliverInRoom(env)
		return
	}
	h.exclusive(func() { h.deliverLocked(env) })
}

// deliverLocked applies an envelope that changes who is where (h.mu held).
func (h *Hub) deliverLocked(env Envelope) {
	switch env.Type {
	case envPair:
		if env.Match != nil {
			h.openLocal(*env.Match)
		}
	case envMatch:
		if env.Match != nil && (env.Side == 0 || env.Side == 1) {
			h.matchSide(*env.Match, env.Side)
		}
	case envAccept:
		if r := h.pending[env.Room]; r != nil {
			h.openPending(r)
		} else if h.rooms[env.Room] == nil {
			h.remember(env.Room, envAccept)
		}
	case envGone:
		h.onGone(env)
	case envError:
		if s := h.sessions[env.To]; s != nil && s.c != nil {
			h.sendErr(s, wire.Errorf(env.Code, "%s", env.Text), env.Ref)
		}
	case envMoved:
		h.onMoved(env)
	case envTakeover:
		h.onTakeover(env.From, env.Node)
	case envFallback:
		if r := h.rooms[env.Room]; r != nil && r.side[0].remote() == nil {
			if e := h.fallback(r); e != nil && r.side[1].remote() != nil {
				h.opt.Bus.Publish(r.side[1].node(), Envelope{Type: envError, To: env.From, Code: e.Code, Text: e.Msg, Ref: "fallback"})
			}
		}
	case envSFU:
		if r := h.rooms[env.Room]; r != nil {
			r.media, r.sfuNode = wire.MediaSFU, env.Node
			r.buf, r.bufBytes = [2][][]byte{}, [2]int{}
		}
	case envSFUSig:
		h.onRemoteSFUSignal(env)
	case envBan:
		var b moderation.Ban
		if json.Unmarshal(env.Frame, &b) == nil {
			h.applyBan(b)
		}
	default:
		h.log.Warn("unknown envelope from another node", "type", env.Type)
	}
}

// deliverInRoom hands a frame or signal from the other node to our side
// of its room, under the room's lock like Hub.inRoom.
func (h *Hub) deliverInRoom(env Envelope) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	s := h.member(env.Room, env.To)
	if s == nil {
		return
	}
	s.room.mu.Lock()
	defer s.room.mu.Unlock()
	if env.Type == envFrame {
		h.countRemoteChat(s, env.Frame)
		h.relay(s, outFrame{b: env.Frame})
		return
	}
	h.onRemoteSignal(s, env)
}

// member is the local session id if it is in room code.
func (h *Hub) member(code, id string) *session {
	s := h.sessions[id]
	if s == nil || s.room == nil || s.room.code != code {
		return nil
	}
	return s
}

func (h *Hub) onGone(env Envelope) {
	if r := h.pending[env.Room]; r != nil {
		h.abortPending(r, false)
		return
	}
	r := h.rooms[env.Room]
	if r == nil {
		h.remember(env.Room, envGone)
		return
	}
	p := r.sideByID(env.From)
	if p == nil || p.remote() == nil {
		return
	}
	reason := env.Text
	if reason == "" || reason == "stale" {
		reason = wire.ReasonDisconnected
	}
	h.endRoom(p, reason)
}

// deadChecks is how many checks in a row (one a second) must find a node
// dead before its strangers count as dropped. A Redis that restarted
// empty has lost every heartbeat, and a node is back within a few
// seconds (it beats again and its inbox subscription returns): one
// missed check must not end healthy rooms.
const deadChecks = 5

// watchNodes treats the strangers on nodes that stopped beating as
// dropped: their stranger hears peer_reconnecting, and the room ends after
// the resume grace unless they resume somewhere, or unless the node turns
// out to be alive after all (then peer_resumed). It runs on Run's
// goroutine only, which owns h.suspect; the store calls are made without
// the lock.
func (h *Hub) watchNodes(ctx context.Context) {
	h.mu.Lock()
	nodes := map[string]bool{} // node -> some stranger of ours there is marked down
	for _, r := range h.rooms {
		for _, p := range r.side {
			if np := p.remote(); np != nil {
				nodes[np.name] = nodes[np.name] || np.down
			}
		}
	}
	h.unlock()
	if h.suspect == nil {
		h.suspect = map[string]int{}
	}
	var dead, back []string
	for n, down := range nodes {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		ok, err := h.opt.Bus.Alive(cctx, n)
		cancel()
		switch {
		case err != nil:
			// Redis itself is away: that says nothing about the node.
		case ok:
			delete(h.suspect, n)
			if down {
				back = append(back, n)
			}
		default:
			h.suspect[n]++
			if h.suspect[n] >= deadChecks && !down {
				dead = append(dead, n)
			}
		}
	}
	for n := range h.suspect {
		if _, ok := nodes[n]; !ok {
			delete(h.suspect, n)
		}
	}
	if len(dead) == 0 && len(back) == 0 {
		return
	}
	h.mu.Lock()
	defer h.unlock()
	for _, n := range back {
		h.nodeBack(n)
	}
	for _, n := range dead {
		h.nodeDead(n)
	}
}

// nodeDead marks the strangers on node as dropped (h.mu held).
func (h *Hub) nodeDead(n string) {
	for _, r := range h.rooms {
		for _, p := range r.side {
			np := p.remote()
			if np == nil || np.name != n || np.down {
				continue
			}
			np.down = true
			o := r.other(p)
			h.send(o, wire.RoomMsg{Type: wire.TypePeerReconnecting, Room: r.code})
			p.grace = h.opt.AfterFunc(h.opt.Signal.ResumeGrace, func() {
				h.mu.Lock()
				defer h.unlock()
				if p.room == r && p.via == peer(np) && np.down && h.rooms[r.code] == r {
					h.endRoom(p, wire.ReasonDisconnected)
					h.persist(o)
				}
			})
		}
	}
	h.log.Warn("a node with strangers of our rooms stopped beating", "node", n)
}

// nodeBack undoes nodeDead for a node found alive again (h.mu held).
func (h *Hub) nodeBack(n string) {
	for _, r := range h.rooms {
		for _, p := range r.side {
			np := p.remote()
			if np == nil || np.name != n || !np.down {
				continue
			}
			np.down = false
			if p.grace != nil {
				p.grace.Stop()
				p.grace = nil
			}
			h.send(r.other(p), wire.RoomMsg{Type: wire.TypePeerResumed, Room: r.code})
		}
	}
	h.log.Info("a node thought gone beats again; its rooms go on", "node", n)
}

// Undelivered is told of an envelope the bus gave up on after holding it
// (Redis away for longer than the bus's hold, or the other node gone).
// What a client sent its stranger is answered with `error` `unavailable`
// (ref: the message's type), so nothing is lost silently.
func (h *Hub) Undelivered(env Envelope) {
	if env.Type != envFrame && env.Type != envSignal {
		return
	}
	ref := env.Ref
	if ref == "" {
		var head struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(env.Frame, &head)
		ref = head.Type
	}
	switch ref {
	case wire.TypeChat, wire.TypeOffer, wire.TypeAnswer, wire.TypeCandidate:
	default:
		return // typing and the like: stale by now, nothing to resend
	}
	h.mu.Lock()
	defer h.unlock()
	r := h.rooms[env.Room]
	if r == nil {
		return
	}
	p := r.sideByID(env.To)
	if p == nil {
		return
	}
	if s := r.other(p); s.remote() == nil && s.c != nil {
		h.sendErr(s, wire.Errorf(wire.CodeUnavailable, "%s could not reach your stranger's node; send it again", ref), ref)
	}
}
