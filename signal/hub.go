// Package signal is duet's WebSocket endpoint: sessions and their resume
// tokens, rooms, the relay of offer/answer/candidates between the two
// strangers of a room, chat and typing, reports, and the per-IP and
// per-session limits. The wire contract is docs/PROTOCOL.md.
//
// Who is where (sessions, rooms, pending matches) sits behind the Hub's
// read/write lock, and what happens inside one room behind that room's
// own lock, so rooms do not wait for each other; no store, bus, SFU or
// socket call is made under either (effects run after the lock is let
// go), and sockets only ever get frames through bounded queues, so no
// client can block the hub.
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
	"github.com/duetchat/duet/internal/addrkey"
	"github.com/duetchat/duet/matcher"
	"github.com/duetchat/duet/moderation"
	"github.com/duetchat/duet/transport"
	"github.com/duetchat/duet/wire"
)

// Queue is what the hub needs of the matcher.
type Queue interface {
	Join(ctx context.Context, t matcher.Ticket) error
	Leave(ctx context.Context, session string) (bool, error)
}

// Moderator records reports and keeps bans (moderation.Moderator).
type Moderator interface {
	// Report records r; it returns the ban r completed, if any.
	Report(ctx context.Context, r moderation.Report, reportedIP string) (*moderation.Ban, error)
	// Check returns the ban in force on a session or an address hash.
	Check(ctx context.Context, session, ipHash string) (moderation.Ban, bool, error)
}

// ICEProvider hands out the ICE servers for one stranger of one room; the
// TURN role mints short-lived credentials here.
type ICEProvider interface {
	ICEServers(room, session string) []wire.ICEServer
}

// StaticICE serves the same URLs to everyone (STUN, no credentials).
type StaticICE []string

// ICEServers implements ICEProvider.
func (s StaticICE) ICEServers(_, _ string) []wire.ICEServer {
	if len(s) == 0 {
		return []wire.ICEServer{}
	}
	return []wire.ICEServer{{URLs: append([]string(nil), s...)}}
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
	// Moderation records reports and keeps bans; nil: in memory with
	// the default policy.
	Moderation Moderator
	ICE        ICEProvider
	// RelayOnly tells video clients to use TURN candidates only, so
	// strangers never see each other's addresses (turn.mode: always).
	RelayOnly bool
	// TURN is advertised in welcome.features.
	TURN bool
	// Bus links this hub to the other nodes on a shared store; nil: a
	// node on its own (localBus).
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
	// Rooms hears of every room this node ends (the TURN role revokes
	// the room's credentials); nil: nobody listens.
	Rooms RoomListener
	// StoreSeen, if set, is when the store last answered anything (any
	// command of the node): a join on a busy node waits while the store
	// answers, and gives up soon only when it is silent.
	StoreSeen func() time.Time
	// Shield is the operator's default for the page's nudity shield
	// (moderation.shield), sent in welcome.features; "" is off.
	Shield string
	// Gate, if set, must admit every join a client asks for (the
	// proof-of-work check, bots.pow); nil: joins are free.
	Gate Gatekeeper
}

// RoomListener hears that a room has ended. It is called with the hub's
// lock held and must not block.
type RoomListener interface{ RoomEnded(code string) }

type noListener struct{}

func (noListener) RoomEnded(string) {}

// Hub owns every session and room of this node.
type Hub struct {
	opt  Options
	log  *slog.Logger
	m    *metrics
	ips  *transport.IPTable
	salt []byte
	// blocks makes block identities and handles (block.go);
	// reportReasons counts reports by reason (safety.go)
	blocks        *blockKeys
	reportReasons *prometheus.CounterVec
	// keys turns a client address into what limits and bans count:
	// the address for IPv4, its limits.ipv6_prefix block for IPv6.
	keys addrkey.Keyer

	// mu guards the sessions and rooms: write-held to change who is where
	// (queue, match, resume, drop, end), read-held with the room's own lock
	// for what happens inside one room (Hub.inRoom).
	mu       sync.RWMutex
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
	reports   []reportJob
	// SFU signals of strangers on other nodes, applied in order off the lock.
	remoteMedia        []mediaJob
	remoteMediaRunning bool
	// effects are the store calls decided under mu; whoever releases mu
	// hands them to store (unlock), in the order they were decided.
	effects []effect
	store   *serial
	// combine queues the writes that sockets, joins and pairing passes
	// make often, for one lock per batch (combine.go).
	combine combiner
	health  storeHealth
	// tasks are the hub's own goroutines (SFU opens and closes, remote
	// SFU signals); Shutdown waits for them.
	tasks group
	// suspect counts the checks in a row that found a node dead; only
	// Run's goroutine (watchNodes) touches it.
	suspect   map[string]int
	writers   sync.WaitGroup // open sockets, until each is flushed and closed
	writeBufs sync.Pool      // gorilla's write buffers, shared by all sockets
	readBufs  sync.Pool      // *bytes.Buffer for one inbound frame at a time
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
	ip        string // address key (IPv6: its /64), only for per-IP limits; never logged
	ipHash    string
	state     state
	prefs     *prefs
	joinedAt  time.Time // identifies the current ticket
	room      *room
	c         *transport.Conn
	limits    *sessionLimits
	// self is the session's block identity (its browser token's, else
	// its own) and blocked those it never wants to meet (block.go).
	self    string
	blocked []string
	// requeue: the socket dropped while waiting; queue again on resume.
	requeue  bool
	grace    Timer
	dropGen  int
	pending  [][]byte // frames for a dropped socket, delivered on resume
	lastLeft time.Time
	// via reaches the session: here, or (a nodePeer) on the node of a
	// stranger who is not ours, the session then being only the other
	// side of one of our rooms.
	via   peer
	pend  *room // a split match waiting for the other node
	saved saved // what the resume record last said
	// queuedFor is the ticket (by joinedAt) `queued` was sent for.
	queuedFor time.Time
	// mixedModes: a ticket of this session may have been queued in
	// another mode than its prefs' (the mode changed, or the session
	// came from another node), so its joins are not SoleMode.
	mixedModes bool
}

// maxPending bounds what a dropped session collects for its resume.
const maxPending = 64

// A room's own lock, mu, guards ready, buf, bufBytes, chats and what its sides
// are sent (their sockets' queues, pending) while h.mu is only read-held
// (Hub.inRoom); with h.mu write-held nobody else runs, and mu is not taken.
type room struct {
	mu       sync.Mutex
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
	// shieldHit: that side's nudity shield flagged the other's video.
	shieldHit [2]bool
	// self: each side's block identity, for matched.block; chats: the
	// chats each side sent, for signal.chat_links.
	self  [2]string
	chats [2]int
}

// ticket is s's current queue ticket (prefs set).
func (s *session) ticket() matcher.Ticket {
	return matcher.Ticket{
		Session: s.id, Mode: s.prefs.mode, Interests: s.prefs.interests,
		Lang: s.prefs.lang, JoinedAt: s.joinedAt, IPHash: s.ipHash,
		Self: s.self, Blocked: s.blocked, SoleMode: !s.mixedModes,
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
		return wire.MediaP2P
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
	if opt.Rooms == nil {
		opt.Rooms = noListener{}
	}
	if opt.Bus == nil {
		opt.Bus = localBus{}
	}
	if opt.ICE == nil {
		opt.ICE = StaticICE(opt.Signal.ICEServers)
	}
	if opt.Moderation == nil {
		opt.Moderation = moderation.NewModerator(moderation.NewMemoryStore(10000),
			moderation.Policy{ReportsToBan: 3, Window: time.Hour, BanDuration: 24 * time.Hour}, opt.Now, opt.Random)
	}
	salt := append([]byte(nil), opt.Salt...)
	if len(salt) == 0 {
		salt = make([]byte, 32)
		if _, err := io.ReadFull(opt.Random, salt); err != nil {
			return nil, fmt.Errorf("signal: reading salt: %w", err)
		}
	}
	keys, err := addrkey.New(opt.Limits.IPv6Prefix)
	if err != nil {
		return nil, fmt.Errorf("signal: limits.ipv6_prefix: %w", err)
	}
	h := &Hub{
		opt:      opt,
		keys:     keys,
		log:      opt.Logger,
		ips:      transport.NewIPTable(opt.Limits),
		salt:     salt,
		sessions: make(map[string]*session),
		tokens:   make(map[string]*session),
		rooms:    make(map[string]*room),
		pending:  make(map[string]*room),
		early:    make(map[string]string),
		store:    newSerial(),
	}
	h.health.now, h.health.seen = opt.Now, opt.StoreSeen
	m, err := newMetrics(opt.Registerer, h)
	if err != nil {
		return nil, err
	}
	h.m = m
	if err := h.initSafety(); err != nil {
		return nil, err
	}
	return h, nil
}

// Run does housekeeping until ctx ends.
func (h *Hub) Run(ctx context.Context) error {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	var nodes <-chan time.Time
	if h.opt.Bus.Shared() {
		nt := time.NewTicker(time.Second)
		defer nt.Stop()
		nodes = nt.C
	}
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			h.ips.Sweep(h.opt.Now(), 10*time.Minute)
		case <-nodes:
			h.watchNodes(ctx)
			if n%10 == 0 {
				h.requeueStale(ctx)
			}
		}
	}
}

func (h *Hub) randomID(n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(h.opt.Random, b); err != nil {
		return "", fmt.Errorf("signal: random id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// hashIP keys logs and bans without ever writing the address itself.
// It hashes the address's key, so an IPv6 address hashes like every other
// address of its /64 (a ban on one covers them all); an IPv4 address
// hashes as itself. ip may be an address or a key already.
func (h *Hub) hashIP(ip string) string {
	mac := hmac.New(sha256.New, h.salt)
	mac.Write([]byte(h.keys.Key(ip)))
	return hex.EncodeToString(mac.Sum(nil)[:8])
}

// storeTimeout bounds the store calls nobody waits on (leaves, tickets
// put back); joins, which a client waits on, are bounded by storeJoin.
const storeTimeout = time.Second

func storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), storeTimeout)
}

// effect is a store call for one session, decided under h.mu.
type effect struct {
	session string
	f       func()
}

// later queues a store call decided under h.mu, to run once the lock is
// released, after the session's earlier ones: no session of the node
// waits on Redis, and no socket stops being read (h.mu held).
func (h *Hub) later(session string, f func()) {
	h.effects = append(h.effects, effect{session, f})
}

// spawn runs f on a goroutine the hub owns: Shutdown waits for it.
func (h *Hub) spawn(f func()) { h.tasks.run(f) }

// unlock releases h.mu and then starts the store calls decided under it.
func (h *Hub) unlock() {
	fx := h.effects
	h.effects = nil
	h.mu.Unlock()
	for _, e := range fx {
		h.store.do(e.session, e.f)
	}
}

// ---- sending (h.mu held) ----

// send hands s a message that is never held (h.mu held).
func (h *Hub) send(s *session, v any) { h.relay(s, outFrame{b: wire.Encode(v)}) }

func (h *Hub) sendErr(s *session, e *wire.Error, ref string) {
	h.m.errors.WithLabelValues(e.Code).Inc()
	h.send(s, wire.ErrorMsg{Type: wire.TypeError, Code: e.Code, Message: e.Msg, Ref: ref})
}

func (h *Hub) welcome(s *session, resumed bool) {
	h.send(s, wire.WelcomeMsg{
		Type: wire.TypeWelcome, Protocol: wire.ProtocolVersion, Session: s.id, Token: s.token,
		Features: wire.Features{TURN: h.opt.TURN, SFU: h.opt.SFU != nil, Text: true, Shield: h.shieldMode(), FaceCheck: h.opt.Signal.FaceCheck, FaceRecheck: faceRecheck(h.opt.Signal), POW: h.opt.Gate != nil},
		Online:   h.online, Resumed: resumed,
	})
}

func (h *Hub) matchedFor(r *room, s *session) wire.MatchedMsg {
	ice, policy := []wire.ICEServer{}, ""
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
	return wire.MatchedMsg{
		Type: wire.TypeMatched, Room: r.code, Role: role, Mode: r.mode,
		CommonInterests: r.common, ICEServers: ice, Media: r.mediaPath(),
		P2PTimeoutMS:       h.opt.Signal.P2PTimeout.Milliseconds(),
		ICETransportPolicy: policy,
		Block:              h.blocks.handle(r.self[1-r.index(s)]),
	}
}

// ---- queue and rooms (h.mu held) ----

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
		if p.remote() != nil && p.grace != nil {
			p.grace.Stop()
			p.grace = nil
		}
	}
	now := h.opt.Now()
	other.lastLeft = now
	other.via.ended(other, r, s.id, reason)
	h.m.roomEnded(r.mode)
	h.opt.Rooms.RoomEnded(r.code)
	h.log.Info("room ended", "room", r.code, "mode", r.mode, "reason", reason,
		"duration_ms", now.Sub(r.started).Milliseconds())
}

// openLocal opens the room of a pair whose sides are both on this node, or
// puts back the live side when the other is gone (h.mu held).
func (h *Hub) openLocal(m matcher.Match) {
	a, b := h.sessions[m.A.Session], h.sessions[m.B.Session]
	okA, okB := h.live(a, m.A), h.live(b, m.B)
	if !okA || !okB {
		for _, side := range []struct {
			ok bool
			t  matcher.Ticket
		}{{okA, m.A}, {okB, m.B}} {
			if side.ok {
				h.requeue(side.t, "re-queue after stale match failed")
			}
		}
		h.m.staleMatches.Inc()
		return
	}
	r := &room{
		code: m.Room, mode: m.Mode, side: [2]*session{a, b},
		common: append([]string{}, m.Common...), started: h.opt.Now(),
		self: [2]string{m.A.Self, m.B.Self},
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
