package node

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/duetchat/duet/internal/addrkey"
	"github.com/duetchat/duet/moderation"
	"github.com/duetchat/duet/signal"
)

// turnGate refuses TURN credentials of banned sessions, and of every
// address an operator banned, as the hub does for sockets: a ban from
// reports takes the session out but leaves the others behind its address
// (other people behind one NAT) until they next queue.
type turnGate struct {
	mod  signal.Moderator
	keys addrkey.Keyer
	// hash is the hub's salted address hash, set once the hub exists
	// (the relay starts before it).
	hash atomic.Pointer[func(ip string) string]
}

// gateTimeout bounds a ban check on the relay's read loop; the checks
// read a local copy on every store but Redis before its first load.
const gateTimeout = 250 * time.Millisecond

func (g *turnGate) Refused(session string, src net.Addr) bool {
	ipHash := ""
	if ap, err := netip.ParseAddrPort(src.String()); err == nil {
		if hash := g.hash.Load(); hash != nil {
			ipHash = (*hash)(g.keys.Key(ap.Addr().String()))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), gateTimeout)
	defer cancel()
	b, banned, err := g.mod.Check(ctx, session, ipHash)
	if err != nil || !banned {
		return false // a store fault must not cut live calls
	}
	return (session != "" && b.Session == session) || b.By == moderation.ByAdmin
}

// revoker is where an ended room's TURN credentials are revoked: on this
// node's relay at once and, on Redis, on every other node's through a
// pub/sub channel, so a credential is refused wherever it is tried.
type revoker struct {
	revoke func(room string) // this node's relay
	rdb    redis.UniversalClient
	ch     string
	queue  chan string
	log    *slog.Logger
}

// revokeQueue bounds what waits for Redis; past it a revocation reaches
// only this node (its own credentials, the ones it minted, still stop).
const revokeQueue = 4096

// newRevoker takes this node's relay's revoke, nil when the node runs no
// relay: then it neither publishes nor listens. Only a relay mints room
// credentials (its ICEServers), so such a node handed out none for its
// side of a room and has no relay to refuse one on; the node on the other
// side of a room, if it runs a relay, publishes when its copy of the room
// ends. A node without a relay so saves a PUBLISH per room it ends.
func newRevoker(revoke func(string), rdb redis.UniversalClient, prefix string, log *slog.Logger) *revoker {
	if revoke == nil {
		return &revoker{revoke: func(string) {}, log: log}
	}
	r := &revoker{revoke: revoke, rdb: rdb, ch: prefix + "turn:revoked", log: log}
	if rdb != nil {
		r.queue = make(chan string, revokeQueue)
	}
	return r
}

// RoomEnded is called by the hub with its lock held: it must not block.
func (r *revoker) RoomEnded(code string) {
	r.revoke(code)
	if r.queue == nil {
		return
	}
	select {
	case r.queue <- code:
	default:
	}
}

// run publishes this node's revocations and applies everyone's until ctx
// ends. A message missed while Redis was away costs little: the room's
// own nodes revoked it locally, and every credential lapses at its TTL.
func (r *revoker) run(ctx context.Context) error {
	if r.rdb == nil {
		return nil
	}
	published := make(chan struct{})
	go func() { defer close(published); r.publish(ctx) }()
	defer func() { <-published }() // ctx has ended: publish is returning
	// Channel, not Receive: Receive does not return when ctx ends, and
	// the channel's own goroutine subscribes again after Redis restarts.
	ps := r.rdb.Subscribe(ctx, r.ch)
	defer ps.Close()
	msgs := ps.Channel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-msgs:
			if !ok {
				return nil
			}
			r.revoke(m.Payload)
		}
	}
}

func (r *revoker) publish(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case code := <-r.queue:
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			if err := r.rdb.Publish(pctx, r.ch, code).Err(); err != nil {
				r.log.Debug("publishing a TURN revocation", "room", code, "err", err)
			}
			cancel()
		}
	}
}
