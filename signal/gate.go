package signal

// The gate a client's join passes before its ticket goes in: with
// bots.pow, a solved proof-of-work challenge (or a pass one bought).

import (
	"context"
	"errors"
	"net/http"

	"github.com/duetchat/duet/transport"
	"github.com/duetchat/duet/wire"
)

// Gatekeeper admits or refuses a join the client asked for. It is called
// without the hub lock (it may ask Redis). A refusal the client can act
// on implements ErrorCode() (a wire code); any other error is the gate's
// own failure and is answered unavailable.
type Gatekeeper interface {
	Admit(ctx context.Context, session, addrKey, payload string) error
}

// refuseUnpaidJoin: a join the gate refuses is answered with the gate's
// error, and the session stays idle, as after a ban.
func (h *Hub) refuseUnpaidJoin(j joinJob) bool {
	if h.opt.Gate == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), moderationTimeout)
	err := h.opt.Gate.Admit(ctx, j.s.id, j.s.ip, j.pow)
	cancel()
	if err == nil {
		return false
	}
	e := wire.Errorf(wire.CodeUnavailable, "cannot check your proof of work right now; try again shortly")
	var coded interface{ ErrorCode() string }
	if errors.As(err, &coded) {
		e = wire.Errorf(coded.ErrorCode(), "%s", err.Error())
	}
	h.mu.Lock()
	defer h.unlock()
	if h.sessions[j.s.id] == j.s && j.s.state == stateWaiting && j.s.joinedAt.Equal(j.t.JoinedAt) {
		j.s.state = stateIdle
		h.sendErr(j.s, e, j.ref)
		h.persist(j.s)
	}
	return true
}

// ClientKey is the address key of r's client as /ws sees it (trusted
// proxies believed, an IPv6 address as its prefix), for other endpoints
// that count per address.
func (h *Hub) ClientKey(r *http.Request) string {
	return h.keys.Key(transport.ClientIP(r, h.opt.TrustedProxies))
}
