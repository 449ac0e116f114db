// Package signal is duet's WebSocket endpoint: sessions and their resume
// tokens, rooms, the relay of offer/answer/candidates between the two
// strangers of a room, chat and typing, reports, and the per-IP and
// per-session limits. The wire contract is docs/PROTOCOL.md.
//
// All session and room state sits behind one mutex in Hub; sockets only
// ever get frames through bounded queues, so no client can block the hub.
package signal

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/matcher"
	"github.com/duetchat/duet/moderation"
)

// Queue is what the hub needs of the matcher.
type Queue interface {
	Join(ctx context.Context, t matcher.Ticket) error
	Leave(ctx context.Context, session string) (bool, error)
}

// ReportSink records reports.
type ReportSink interface {
	Record(ctx context.Context, r moderation.Report) error
}

// ICEProvider hands out the ICE servers for one stranger of one room; the
// TURN role mints short-lived credentials here.
type ICEProvider interface {
	ICEServers(room, session string) []ICEServer
}

// StaticICE serves the same URLs to everyone (STUN, no credentials).
type StaticICE []string

// ICEServers implements ICEProvider.
func (s StaticICE) ICEServers(_, _ string) []ICEServer {
	if len(s) == 0 {
		return []ICEServer{}
	}
	return []ICEServer{{URLs: append([]string(nil), s...)}}
}

// Timer is the part of *time.Timer the hub uses.
type Timer interface{ Stop() bool }

// Options configure a Hub. Queue is required; the rest have defaults.
type Options struct {
	Signal         configs.Signal
	Limits         configs.Limits
	AllowedOrigins []string
	// TrustedProxies may name the client in X-Forwarded-For/Forwarded.
	TrustedProxies []netip.Prefix
	Queue          Queue
	Reports        ReportSink
	ICE            ICEProvider
	// RelayOnly tells video clients to use TURN candidates only, so
	// strangers never see each other's addresses (turn.mode: always).
	RelayOnly bool
	// TURN is advertised in welcome.features.
	TURN bool
	// Bus links this hub to the other nodes on a shared store; nil for
	// one node on its own.
	Bus Bus
	// SFU carries the rooms that fall back to it; nil: no SFU (fallback
	// answers unavailable). SFUAlways puts every video room on it.
	SFU        MediaServer
	SFUAlways  bool
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
	AfterFunc  func(d time.Duration, f func()) Timer
	Random     io.Reader // ids, tokens and the IP-hash salt
	// Salt keys the IP hashes; nodes sharing a store share it, so one
	// address hashes alike on all of them. Empty: a random one.
	Salt []byte
}

// Hub owns every session and room of this node.
type Hub struct {
	opt  Options
	log  *slog.Logger
	m    *metrics
	ips  *ipTable
	salt []byte

	mu       sync.Mutex
	sessions map[string]*session // by id
	tokens   map[string]*session // by resume token
	rooms    map[string]*room
	pending  map[string]*room  // split matches waiting for the other node
	early    map[string]string // answers that overtook their match
	online   int
	closing  bool
	// deferring: handleFrame is dispatching, and join leaves its store
	// call in joins for after the lock.
	deferring bool
	joins     []joinJob
	media     []mediaJob
	// SFU signals of strangers on other nodes, applied in order off the lock.
	remoteMedia        []mediaJob
	remoteMediaRunning bool
	writers            sync.WaitGroup
}

type state int

const (
	stateIdle state = iota
	stateWaiting
	stateRoom
)

type prefs struct {
	mode      string
	interests []string
	lang      string
}

type session struct {
	id, token string
	ip        string // raw, only for per-IP limits; never logged
	ipHash    string
	state     state
	prefs     *prefs
	joinedAt  time.Time // identifies the current ticket
	room      *room
	c         *conn
	limits    *sessionLimits
	// requeue: the socket dropped while waiting; queue again on resume.
	requeue  bool
	grace    Timer
	dropGen  int
	pending  [][]byte // frames for a dropped socket, delivered on resume
	lastLeft time.Time
	// remote names the node of a stranger who is not ours: the session
	// is then only a proxy in one of our rooms.
	remote   string
	nodeDown bool  // remote's node stopped beating
	pend     *room // a split match waiting for the other node
	saved    saved // what the resume record last said
	// queuedFor is the ticket (by joinedAt) `queued` was sent for.
	queuedFor time.Time
}

// maxPending bounds what a dropped session collects for its resume.
const maxPending = 64

type room struct {
	code     string
	mode     string
	side     [2]*session // [0] offers, [1] answers
	ready    [2]bool
	buf      [2][][]byte
	bufBytes [2]int
	common   []string
	started  time.Time
	ticket   matcher.Ticket // split match: ours, to re-queue if it falls through
	timer    Timer
	media    string    // p2p | sfu
	sfu      MediaRoom // set once the SFU room is open (on this node)
	sfuNode  string    // the node whose SFU carries this room, if not this one
}

// ticket is s's current queue ticket (prefs set).
func (s *session) ticket() matcher.Ticket {
	return matcher.Ticket{
		Session: s.id, Mode: s.prefs.mode, Interests: s.prefs.interests,
		Lang: s.prefs.lang, JoinedAt: s.joinedAt,
	}
}

func (r *room) index(s *session) int {
	if r.side[0] == s {
		return 0
	}
	return 1
}

func (r *room) other(s *session) *session { return r.side[1-r.index(s)] }

func (r *room) mediaPath() string {
	if r.media == "" {
		return mediaP2P
	}
	return r.media
}

// NewHub builds a hub; call Run to start its housekeeping.
func NewHub(opt Options) (*Hub, error) {
	if opt.Queue == nil {
		return nil, errors.New("signal: Options.Queue is required")
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.AfterFunc == nil {
		opt.AfterFunc = func(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
	}
	if opt.Random == nil {
		opt.Random = rand.Reader
	}
	if opt.ICE == nil {
		opt.ICE = StaticICE(opt.Signal.ICEServers)
	}
	if opt.Reports == nil {
		opt.Reports = moderation.NewMemoryReports(10000)
	}
	salt := append([]byte(nil), opt.Salt...)
	if len(salt) == 0 {
		salt = make([]byte, 32)
		if _, err := io.ReadFull(opt.Random, salt); err != nil {
			return nil, fmt.Errorf("signal: reading salt: %w", err)
		}
	}
	h := &Hub{
		opt:      opt,
		log:      opt.Logger,
		ips:      newIPTable(opt.Limits),
		salt:     salt,
		sessions: make(map[string]*session),
		tokens:   make(map[string]*session),
		rooms:    make(map[string]*room),
		pending:  make(map[string]*room),
		early:    make(map[string]string),
	}
	m, err := newMetrics(opt.Registerer, h)
	if err != nil {
		return nil, err
	}
	h.m = m
	return h, nil
}

// Run does housekeeping until ctx ends.
func (h *Hub) Run(ctx context.Context) error {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	var nodes <-chan time.Time
	if h.opt.Bus != nil {
		nt := time.NewTicker(time.Second)
		defer nt.Stop()
		nodes = nt.C
	}
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			h.ips.sweep(h.opt.Now(), 10*time.Minute)
		case <-nodes:
			h.watchNodes(ctx)
			if n%10 == 0 {
				h.requeueStale(ctx)
			}
		}
	}
}

// Stats are the public counts.
type Stats struct {
	Online int `json:"online"`
	Rooms  int `json:"rooms"`
}

// Stats returns the node's live counts.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Stats{Online: h.online, Rooms: len(h.rooms)}
}

func (h *Hub) randomID(n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(h.opt.Random, b); err != nil {
		return "", fmt.Errorf("signal: random id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// hashIP keys logs and bans without ever writing the address itself.
func (h *Hub) hashIP(ip string) string {
	mac := hmac.New(sha256.New, h.salt)
	mac.Write([]byte(ip))
	return hex.EncodeToString(mac.Sum(nil)[:8])
}

// ---- sending (h.mu held) ----

func (h *Hub) send(s *session, v any) {
	frame := encode(v)
	if s.remote != "" {
		code := ""
		if s.room != nil {
			code = s.room.code
		}
		h.opt.Bus.Publish(s.remote, Envelope{Type: envFrame, Room: code, To: s.id, Frame: frame})
		return
	}
	if s.c != nil {
		s.c.send(frame)
		return
	}
	if len(s.pending) < maxPending {
		s.pending = append(s.pending, frame)
	}
}

func (h *Hub) sendErr(s *session, e *protoError, ref string) {
	h.m.errors.WithLabelValues(e.code).Inc()
	h.send(s, errorMsg{Type: "error", Code: e.code, Message: e.msg, Ref: ref})
}

func (h *Hub) welcome(s *session, resumed bool) {
	h.send(s, welcomeMsg{
		Type: "welcome", Protocol: ProtocolVersion, Session: s.id, Token: s.token,
		Features: features{TURN: h.opt.TURN, SFU: h.opt.SFU != nil, Text: true},
		Online:   h.online, Resumed: resumed,
	})
}

func (h *Hub) matchedFor(r *room, s *session) matchedMsg {
	ice, policy := []ICEServer{}, ""
	if r.mode == matcher.ModeVideo {
		ice, policy = h.opt.ICE.ICEServers(r.code, s.id), "all"
		if h.opt.RelayOnly {
			policy = "relay"
		}
	}
	role := "offerer"
	if r.index(s) == 1 {
		role = "answerer"
	}
	return matchedMsg{
		Type: "matched", Room: r.code, Role: role, Mode: r.mode,
		CommonInterests: r.common, ICEServers: ice, Media: r.mediaPath(),
		P2PTimeoutMS:       h.opt.Signal.P2PTimeout.Milliseconds(),
		ICETransportPolicy: policy,
	}
}

// ---- queue and rooms (h.mu held) ----

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
		h.joins = append(h.joins, joinJob{s, t})
		return
	}
	h.joined(s, t, h.opt.Queue.Join(ctx, t))
}

type joinJob struct {
	s *session
	t matcher.Ticket
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

// endRoom closes s's room; the stranger gets peer_left with reason and is
// idle. s itself is left idle and told nothing (the caller answers it).
func (h *Hub) endRoom(s *session, reason string) {
	r := s.room
	if r == nil {
		return
	}
	delete(h.rooms, r.code)
	h.closeSFU(r)
	other := r.other(s)
	for _, p := range r.side {
		p.room = nil
		p.state = stateIdle
		if p.remote != "" && p.grace != nil {
			p.grace.Stop()
			p.grace = nil
		}
	}
	now := h.opt.Now()
	other.lastLeft = now
	if other.remote != "" {
		h.opt.Bus.Publish(other.remote, Envelope{Type: envGone, Room: r.code, From: s.id, Text: reason})
	} else {
		h.send(other, roomMsg{Type: "peer_left", Room: r.code, Reason: reason})
		h.persist(other)
	}
	h.m.roomEnded(r.mode)
	h.log.Info("room ended", "room", r.code, "mode", r.mode, "reason", reason,
		"duration_ms", now.Sub(r.started).Milliseconds())
}

// openLocal opens the room of a pair whose sides are both on this node, or
// puts back the live side when the other is gone (h.mu held).
func (h *Hub) openLocal(m matcher.Match) {
	ctx := context.Background()
	a, b := h.sessions[m.A.Session], h.sessions[m.B.Session]
	okA, okB := h.live(a, m.A), h.live(b, m.B)
	if !okA || !okB {
		for _, side := range []struct {
			ok bool
			t  matcher.Ticket
		}{{okA, m.A}, {okB, m.B}} {
			if side.ok {
				if err := h.opt.Queue.Join(ctx, side.t); err != nil && !errors.Is(err, matcher.ErrAlreadyWaiting) {
					h.log.Error("re-queue after stale match failed", "session", side.t.Session, "err", err)
				}
			}
		}
		h.m.staleMatches.Inc()
		return
	}
	r := &room{
		code: m.Room, mode: m.Mode, side: [2]*session{a, b},
		common: append([]string{}, m.Common...), started: h.opt.Now(),
	}
	h.rooms[r.code] = r
	h.startSFUAtMatch(r)
	for _, s := range r.side {
		h.confirmQueued(s)
		s.state = stateRoom
		s.room = r
		h.send(s, h.matchedFor(r, s))
		h.persist(s)
	}
	h.m.roomStarted(r.mode)
}

// live says whether s is still waiting on exactly the ticket t.
func (h *Hub) live(s *session, t matcher.Ticket) bool {
	return s != nil && s.c != nil && s.state == stateWaiting && s.pend == nil &&
		s.prefs != nil && s.prefs.mode == t.Mode && s.joinedAt.Equal(t.JoinedAt)
}

// ---- connection lifecycle ----

// attach registers a new socket: a resumed session when token names one,
// otherwise a fresh session. It sends welcome and the session's state.
func (h *Hub) attach(c *conn, ip, token string) (*session, error) {
	ctx := context.Background()
	rec, found := h.lookup(ctx, token)
	h.mu.Lock()
	defer h.mu.Unlock()
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
		id: id, token: tok, ip: ip, ipHash: h.hashIP(ip), c: c,
		limits: newSessionLimits(h.opt.Limits),
	}
	h.sessions[id] = s
	h.tokens[tok] = s
	h.online++
	h.welcome(s, false)
	if token != "" {
		h.sendErr(s, perr(CodeBadRequest, "resume token unknown or expired; this is a new session"), "resume")
	}
	h.persist(s)
	h.log.Debug("session started", "session", id, "ip", s.ipHash)
	return s, nil
}

// resume moves s onto c (h.mu held).
func (h *Hub) resume(ctx context.Context, s *session, c *conn) error {
	tok, err := h.randomID(32)
	if err != nil {
		return err
	}
	if old := s.c; old != nil {
		// The client noticed the drop before we did: take over quietly.
		s.c = nil
		old.abort()
	} else {
		h.online++
	}
	if s.grace != nil {
		s.grace.Stop()
		s.grace = nil
	}
	s.dropGen++
	delete(h.tokens, s.token)
	if h.opt.Bus != nil {
		h.opt.Bus.Forget(s.token)
	}
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
		h.send(r.other(s), roomMsg{Type: "peer_resumed", Room: r.code})
		h.restartSFU(r)
	case s.requeue:
		s.requeue = false
		h.flushFrames(s, pending)
		h.join(ctx, s)
	default:
		h.flushFrames(s, pending)
		h.send(s, modeMsg{Type: "idle"})
	}
	h.m.resumes.Inc()
	h.persist(s)
	h.log.Info("session resumed", "session", s.id)
	return nil
}

func (h *Hub) flushFrames(s *session, frames [][]byte) {
	for _, f := range frames {
		s.c.send(f)
	}
}

// detach is called once a socket's read loop ends. A close frame from the
// client ends the session at once; anything else starts the resume grace.
func (h *Hub) detach(s *session, c *conn, clientClosed bool) {
	ctx := context.Background()
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.c != c {
		return // a resume already moved the session to another socket
	}
	s.c = nil
	h.online--
	if clientClosed || h.closing {
		h.endSession(ctx, s, ReasonDisconnected)
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
		h.send(r.other(s), roomMsg{Type: "peer_reconnecting", Room: r.code})
	}
	s.dropGen++
	gen := s.dropGen
	s.grace = h.opt.AfterFunc(h.opt.Signal.ResumeGrace, func() { h.expire(s, gen) })
	h.persist(s)
	h.log.Info("session dropped, waiting for resume", "session", s.id, "grace", h.opt.Signal.ResumeGrace)
}

func (h *Hub) expire(s *session, gen int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.c != nil || s.dropGen != gen || h.sessions[s.id] != s {
		return
	}
	h.endSession(context.Background(), s, ReasonDisconnected)
}

// endSession forgets s for good (h.mu held).
func (h *Hub) endSession(ctx context.Context, s *session, reason string) {
	h.unqueue(ctx, s)
	h.endRoom(s, reason)
	if s.grace != nil {
		s.grace.Stop()
		s.grace = nil
	}
	delete(h.sessions, s.id)
	delete(h.tokens, s.token)
	if h.opt.Bus != nil {
		h.opt.Bus.Forget(s.token)
	}
	h.log.Debug("session ended", "session", s.id)
}

// Shutdown tells every client the node is going away, closes the sockets
// and waits (bounded by ctx) for their queues to drain.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closing = true
	for _, s := range h.sessions {
		if s.c != nil {
			h.sendErr(s, perr(CodeUnavailable, "this node is shutting down; reconnect shortly"), "")
			s.c.close(1012, "service restart")
		}
	}
	h.mu.Unlock()
	done := make(chan struct{})
	go func() { h.writers.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("signal: shutdown drain: %w", ctx.Err())
	}
}

// Closing reports whether Shutdown has begun.
func (h *Hub) Closing() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closing
}

// RoomInfo describes one live room for the admin API.
type RoomInfo struct {
	Code    string
	Mode    string
	Started time.Time
	A, B    string // session ids: A offers, B answers
}

// Rooms lists the live rooms.
func (h *Hub) Rooms() []RoomInfo {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]RoomInfo, 0, len(h.rooms))
	for _, r := range h.rooms {
		out = append(out, roomInfo(r))
	}
	return out
}

// Room describes one live room; false if there is none with that code.
func (h *Hub) Room(code string) (RoomInfo, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r, ok := h.rooms[code]
	if !ok {
		return RoomInfo{}, false
	}
	return roomInfo(r), true
}

func roomInfo(r *room) RoomInfo {
	return RoomInfo{Code: r.code, Mode: r.mode, Started: r.started, A: r.side[0].id, B: r.side[1].id}
}
