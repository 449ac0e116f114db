package signal

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/duetchat/duet/matcher"
)

// Bus links the hubs of the nodes that share one Redis store. With it, a
// room's two strangers may sit on different nodes: each node holds its
// own stranger's socket and a proxy for the other, and what one side sends
// the other reaches as an Envelope. Nil for a single node.
//
// Publish, Save and Forget must not block: the hub calls them with its
// lock held. Delivery must keep the order of Publish calls per destination
// node, which is what keeps offer, answer and candidates in order.
type Bus interface {
	// Node names this process; tickets and records carry it.
	Node() string
	// Publish queues env for node (best effort, ordered per node).
	Publish(node string, env Envelope)
	// Save queues the session's resume record; Forget drops a token's.
	Save(rec Record)
	Forget(token string)
	// Load finds the record a resume token names.
	Load(ctx context.Context, token string) (Record, bool, error)
	// Alive reports whether node still beats.
	Alive(ctx context.Context, node string) (bool, error)
}

// Envelope is one hub-to-hub message.
type Envelope struct {
	Type  string          `json:"t"`
	Room  string          `json:"r,omitempty"`
	From  string          `json:"f,omitempty"` // a session on the sending side
	To    string          `json:"o,omitempty"` // a session on the receiving side
	Node  string          `json:"n,omitempty"` // envMoved: where From lives now
	Match *matcher.Match  `json:"m,omitempty"`
	Side  int             `json:"i,omitempty"` // envMatch: which side the receiver owns
	Frame json.RawMessage `json:"b,omitempty"`
	Code  string          `json:"c,omitempty"`
	Text  string          `json:"x,omitempty"` // error message, or why a room ended
	Ref   string          `json:"e,omitempty"`
}

// Envelope types.
const (
	envPair     = "pair"     // a claimed pair whose two sides both live on the receiver
	envMatch    = "match"    // a claimed pair split over two nodes: take your side
	envAccept   = "accept"   // my side is live and holds the room open
	envGone     = "gone"     // my side left the room, or never took it
	envFrame    = "frame"    // deliver Frame to To
	envSignal   = "signal"   // offer/answer/candidate for To, held until To is ready
	envError    = "error"    // an error for To about what it sent
	envMoved    = "moved"    // From resumed on Node
	envTakeover = "takeover" // From resumed elsewhere: let it go quietly
	envFallback = "fallback" // From asked for the SFU; the room's SFU lives on side 0's node
	envSFU      = "sfu"      // the room is on the SFU of Node now
	envSFUSig   = "sfu_sig"  // From's answer or candidate (Ref) for the SFU, Frame its JSON
)

// Record is what a node keeps in the store so that a session can resume on
// any node, even after its own node died.
type Record struct {
	ID        string
	Token     string
	Node      string
	State     string      // idle | waiting | room
	Mode      string      `json:",omitempty"`
	Interests []string    `json:",omitempty"`
	Lang      string      `json:",omitempty"`
	Room      *RoomRecord `json:",omitempty"`
}

// RoomRecord is a session's view of its room.
type RoomRecord struct {
	Code     string
	Mode     string
	Common   []string
	Started  time.Time
	Index    int // 0 offers, 1 answers
	PeerID   string
	PeerNode string
}

// pendingTimeout bounds how long one side of a split match waits for the
// other node's answer before it goes back to the queue.
const pendingTimeout = 5 * time.Second

// saved is what a session's last record said; persist writes on change.
type saved struct {
	st              state
	room, peerNode  string
	token, mode     string
	requeue, queued bool
}

func (h *Hub) local(node string) bool {
	return node == "" || h.opt.Bus == nil || node == h.opt.Bus.Node()
}

// persist writes s's resume record if it changed (h.mu held).
func (h *Hub) persist(s *session) {
	bus := h.opt.Bus
	if bus == nil || s.remote != "" || h.sessions[s.id] != s {
		return
	}
	now := saved{st: s.state, token: s.token, requeue: s.requeue, queued: s.pend != nil}
	if s.prefs != nil {
		now.mode = s.prefs.mode
	}
	if s.room != nil {
		now.room, now.peerNode = s.room.code, s.room.other(s).remote
	}
	if now == s.saved {
		return
	}
	s.saved = now
	rec := Record{ID: s.id, Token: s.token, Node: bus.Node(), State: "idle"}
	if s.prefs != nil {
		rec.Mode, rec.Interests, rec.Lang = s.prefs.mode, s.prefs.interests, s.prefs.lang
	}
	switch {
	case s.state == stateRoom && s.room != nil:
		r := s.room
		peer := r.other(s)
		node := peer.remote
		if node == "" {
			node = bus.Node()
		}
		rec.State = "room"
		rec.Room = &RoomRecord{Code: r.code, Mode: r.mode, Common: r.common, Started: r.started,
			Index: r.index(s), PeerID: peer.id, PeerNode: node}
	case s.state == stateWaiting || s.requeue:
		rec.State = "waiting"
	}
	bus.Save(rec)
}

// Matched implements matcher.Notifier: it opens the room, or puts back the
// live side when the other is gone (cancelled, dropped, or re-queued since).
// A pair whose sides live on other nodes is handed to those nodes.
func (h *Hub) Matched(m matcher.Match) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.matched(m)
}

// MatchedAll implements matcher.BatchNotifier: one lock for a whole pass.
func (h *Hub) MatchedAll(ms []matcher.Match) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range ms {
		h.matched(m)
	}
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
	r.side[1-i] = &session{id: theirs.Session, remote: theirs.Node, state: stateRoom, room: r}
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
			defer h.mu.Unlock()
			if h.pending[code] == r {
				h.log.Warn("no answer from the stranger's node; back to the queue", "room", code)
				h.abortPending(r, true)
			}
		})
	}
}

func (r *room) localSide() *session {
	if r.side[0].remote == "" {
		return r.side[0]
	}
	return r.side[1]
}

// side finds the side with session id; "" matches the remote side.
func (r *room) sideByID(id string) *session {
	for _, p := range r.side {
		if p.id == id || (id == "" && p.remote != "") {
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
		h.opt.Bus.Publish(r.other(s).remote, Envelope{Type: envGone, Room: r.code, From: s.id, Text: "stale"})
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
		h.opt.Bus.Publish(r.other(s).remote, Envelope{Type: envGone, Room: r.code, From: s.id, Text: "stale"})
	}
	if h.sessions[s.id] != s || s.state != stateWaiting || s.c == nil {
		return
	}
	if err := h.opt.Queue.Join(context.Background(), r.ticket); err != nil && !errors.Is(err, matcher.ErrAlreadyWaiting) {
		h.log.Error("re-queue after a lost match failed", "session", s.id, "err", err)
		s.state = stateIdle
		h.sendErr(s, perr(CodeUnavailable, "matching is unavailable right now; try again shortly"), "queue")
		h.persist(s)
	}
}

// remember keeps an answer that overtook its match, for a while.
func (h *Hub) remember(code, what string) {
	if _, ok := h.early[code]; ok {
		return
	}
	h.early[code] = what
	h.opt.AfterFunc(2*pendingTimeout, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.early, code)
	})
}

// Deliver handles one envelope from another node.
func (h *Hub) Deliver(env Envelope) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.opt.Bus == nil {
		return
	}
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
	case envFrame:
		if s := h.member(env.Room, env.To); s != nil {
			h.sendFrame(s, env.Frame)
		}
	case envSignal:
		h.onRemoteSignal(env)
	case envError:
		if s := h.sessions[env.To]; s != nil && s.c != nil {
			h.sendErr(s, perr(env.Code, "%s", env.Text), env.Ref)
		}
	case envMoved:
		h.onMoved(env)
	case envTakeover:
		h.onTakeover(env.From, env.Node)
	case envFallback:
		if r := h.rooms[env.Room]; r != nil && r.side[0].remote == "" {
			if e := h.fallback(r); e != nil && r.side[1].remote != "" {
				h.opt.Bus.Publish(r.side[1].remote, Envelope{Type: envError, To: env.From, Code: e.code, Text: e.msg, Ref: "fallback"})
			}
		}
	case envSFU:
		if r := h.rooms[env.Room]; r != nil {
			r.media, r.sfuNode = mediaSFU, env.Node
			r.buf, r.bufBytes = [2][][]byte{}, [2]int{}
		}
	case envSFUSig:
		h.onRemoteSFUSignal(env)
	default:
		h.log.Warn("unknown envelope from another node", "type", env.Type)
	}
}

// member is the local session id if it is in room code.
func (h *Hub) member(code, id string) *session {
	s := h.sessions[id]
	if s == nil || s.room == nil || s.room.code != code {
		return nil
	}
	return s
}

func (h *Hub) sendFrame(s *session, frame []byte) {
	if s.c != nil {
		s.c.send(frame)
		return
	}
	if len(s.pending) < maxPending {
		s.pending = append(s.pending, frame)
	}
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
	if p == nil || p.remote == "" {
		return
	}
	reason := env.Text
	if reason == "" || reason == "stale" {
		reason = ReasonDisconnected
	}
	h.endRoom(p, reason)
}

// onRemoteSignal applies the same readiness buffer as in-node relay; the
// sender hears about an overflow through its own node.
func (h *Hub) onRemoteSignal(env Envelope) {
	to := h.member(env.Room, env.To)
	if to == nil {
		return
	}
	r := to.room
	i := r.index(to)
	if r.ready[i] && to.c != nil {
		to.c.send(env.Frame)
		return
	}
	l := h.opt.Limits
	if len(r.buf[i]) >= l.MaxBufferedSignals || r.bufBytes[i]+len(env.Frame) > l.MaxBufferedBytes {
		from := r.other(to)
		h.opt.Bus.Publish(from.remote, Envelope{Type: envError, To: env.From, Code: CodeTooLarge,
			Text: "the stranger is not ready and too many signals are waiting for them", Ref: env.Ref})
		return
	}
	r.buf[i] = append(r.buf[i], env.Frame)
	r.bufBytes[i] += len(env.Frame)
}

// onMoved: the stranger of one of our rooms resumed on env.Node.
func (h *Hub) onMoved(env Envelope) {
	r := h.rooms[env.Room]
	if r == nil {
		// The room ended while its side was moving: say so, once.
		h.opt.Bus.Publish(env.Node, Envelope{Type: envGone, Room: env.Room, Text: ReasonDisconnected})
		return
	}
	p := r.sideByID(env.From)
	if p == nil {
		return
	}
	if p.remote == "" {
		// Both sides were ours; the mover is now a proxy.
		h.letGo(p)
	}
	if p.grace != nil {
		p.grace.Stop()
		p.grace = nil
	}
	p.remote, p.nodeDown = env.Node, false
	o := r.other(p)
	if o.remote == "" {
		h.send(o, roomMsg{Type: "peer_resumed", Room: r.code})
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
		c.abort()
		h.online--
	}
	if s.pend != nil {
		h.dropPending(s.pend)
	}
	delete(h.sessions, s.id)
	delete(h.tokens, s.token)
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
	if r := s.room; r != nil && r.other(s).remote != "" && h.rooms[r.code] == r {
		delete(h.rooms, r.code) // it lives on between the other two nodes
		h.m.roomEnded(r.mode)
	}
	h.log.Info("session moved to another node", "session", id)
}

// adopt resumes on this node a session whose record names another node
// (h.mu held).
func (h *Hub) adopt(ctx context.Context, c *conn, ip string, rec Record) (*session, error) {
	tok, err := h.randomID(32)
	if err != nil {
		return nil, err
	}
	bus := h.opt.Bus
	s := &session{
		id: rec.ID, token: tok, ip: ip, ipHash: h.hashIP(ip), c: c,
		limits: newSessionLimits(h.opt.Limits),
	}
	if rec.Mode != "" {
		s.prefs = &prefs{mode: rec.Mode, interests: append([]string{}, rec.Interests...), lang: rec.Lang}
	}
	h.sessions[s.id] = s
	h.tokens[tok] = s
	h.online++
	bus.Forget(rec.Token)
	h.welcome(s, true)
	switch {
	case rec.State == "room" && rec.Room != nil:
		h.adoptRoom(s, rec)
	case rec.State == "waiting" && s.prefs != nil:
		// A ticket left by a dead node would block the new one.
		if _, err := h.opt.Queue.Leave(ctx, s.id); err != nil {
			h.log.Warn("dropping the old ticket", "session", s.id, "err", err)
		}
		h.join(ctx, s)
	default:
		h.send(s, modeMsg{Type: "idle"})
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
		if p == nil || p.remote == "" {
			h.send(s, modeMsg{Type: "idle"})
			return
		}
		if p.grace != nil {
			p.grace.Stop()
		}
		r.side[r.index(p)] = s
		s.state, s.room = stateRoom, r
		r.ready[r.index(s)], r.buf[r.index(s)], r.bufBytes[r.index(s)] = false, nil, 0
		h.send(s, h.matchedFor(r, s))
		h.send(r.other(s), roomMsg{Type: "peer_resumed", Room: r.code})
		h.persist(r.other(s))
		return
	}
	if rr.PeerNode == h.opt.Bus.Node() || rr.Index < 0 || rr.Index > 1 {
		// The stranger was here and the room is gone.
		h.send(s, roomMsg{Type: "peer_left", Room: rr.Code, Reason: ReasonDisconnected})
		h.send(s, modeMsg{Type: "idle"})
		return
	}
	r := &room{code: rr.Code, mode: rr.Mode, common: append([]string{}, rr.Common...), started: rr.Started}
	r.side[rr.Index] = s
	r.side[1-rr.Index] = &session{id: rr.PeerID, remote: rr.PeerNode, state: stateRoom, room: r}
	s.state, s.room = stateRoom, r
	h.rooms[r.code] = r
	h.m.roomStarted(r.mode)
	h.opt.Bus.Publish(rr.PeerNode, Envelope{Type: envMoved, Room: r.code, From: s.id, Node: h.opt.Bus.Node()})
	h.send(s, h.matchedFor(r, s))
}

// watchNodes treats the strangers on nodes that stopped beating as
// dropped: their stranger hears peer_reconnecting, and the room ends after
// the resume grace unless they resume somewhere.
func (h *Hub) watchNodes(ctx context.Context) {
	h.mu.Lock()
	nodes := map[string]bool{}
	for _, r := range h.rooms {
		for _, p := range r.side {
			if p.remote != "" && !p.nodeDown {
				nodes[p.remote] = true
			}
		}
	}
	h.mu.Unlock()
	var dead []string
	for n := range nodes {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		ok, err := h.opt.Bus.Alive(cctx, n)
		cancel()
		if err == nil && !ok {
			dead = append(dead, n)
		}
	}
	if len(dead) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, n := range dead {
		for _, r := range h.rooms {
			p := r.sideByID("")
			if p == nil || p.remote != n || p.nodeDown {
				continue
			}
			p.nodeDown = true
			o := r.other(p)
			h.send(o, roomMsg{Type: "peer_reconnecting", Room: r.code})
			node := n
			p.grace = h.opt.AfterFunc(h.opt.Signal.ResumeGrace, func() {
				h.mu.Lock()
				defer h.mu.Unlock()
				if p.room == r && p.remote == node && p.nodeDown && h.rooms[r.code] == r {
					h.endRoom(p, ReasonDisconnected)
					h.persist(o)
				}
			})
		}
		h.log.Warn("a node with strangers of our rooms stopped beating", "node", n)
	}
}

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

// lookup finds the record of a token this node does not know.
func (h *Hub) lookup(ctx context.Context, token string) (Record, bool) {
	if token == "" || h.opt.Bus == nil {
		return Record{}, false
	}
	h.mu.Lock()
	_, mine := h.tokens[token]
	h.mu.Unlock()
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
