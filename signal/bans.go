package signal

// Reports and bans: a report is recorded off the hub lock (it is a store
// round trip, maybe several); a ban it completes reaches the banned
// session on whichever node holds it. Bans are checked when a socket
// connects and whenever a client asks to queue.

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gorilla/websocket"

	"github.com/duetchat/duet/moderation"
	"github.com/duetchat/duet/transport"
	"github.com/duetchat/duet/wire"
)

// moderationTimeout bounds one report or ban check against the store.
const moderationTimeout = 3 * time.Second

type reportJob struct {
	rep      moderation.Report
	ip       string // the reported session's address hash
	node     string // the reported session's node when it is not ours
	reporter *session
	room     *room
}

// sendBanned tells s it is banned and until when (h.mu held).
func (h *Hub) sendBanned(s *session, b moderation.Ban, ref string) {
	h.m.errors.WithLabelValues(wire.CodeBanned).Inc()
	h.send(s, wire.ErrorMsg{
		Type: wire.TypeError, Code: wire.CodeBanned, Ref: ref, Until: b.Until.UnixMilli(),
		Message: fmt.Sprintf("you are banned from matching until %s", b.Until.UTC().Format(time.RFC3339)),
	})
}

// checkBan asks the store, without the hub lock. A store that cannot
// answer lets the client through: matching needs the same store and
// answers unavailable by itself.
func (h *Hub) checkBan(session, ipHash string) (moderation.Ban, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), moderationTimeout)
	defer cancel()
	b, banned, err := h.opt.Moderation.Check(ctx, session, ipHash)
	if err != nil {
		h.log.Warn("ban check failed; letting the client through", "session", session, "err", err)
		return moderation.Ban{}, false
	}
	return b, banned
}

// refuseBanned ends a banned client's new or resumed socket right after
// its welcome: `error` `banned`, then close 1008.
func (h *Hub) refuseBanned(s *session, c *transport.Conn) bool {
	b, banned := h.checkBan(s.id, s.ipHash)
	if !banned {
		return false
	}
	h.mu.Lock()
	if s.c == c {
		h.sendBanned(s, b, "")
		s.c = nil
		h.online--
		h.endSession(context.Background(), s, wire.ReasonBanned)
	}
	h.unlock()
	h.m.refused.WithLabelValues("banned").Inc()
	c.Close(websocket.ClosePolicyViolation, "banned")
	return true
}

// refuseBannedJoin: a queue the client asked for waits for the ban check;
// a banned session is told so and stays idle.
func (h *Hub) refuseBannedJoin(j joinJob) bool {
	b, banned := h.checkBan(j.s.id, j.s.ipHash)
	if !banned {
		return false
	}
	h.mu.Lock()
	defer h.unlock()
	if h.sessions[j.s.id] == j.s && j.s.state == stateWaiting && j.s.joinedAt.Equal(j.t.JoinedAt) {
		j.s.state = stateIdle
		h.sendBanned(j.s, b, j.ref)
		h.persist(j.s)
	}
	return true
}

// runReports records the reports handleFrame deferred, then ends their
// rooms, queues the reporters again and applies the bans the reports
// completed, in that order and under one lock: the reported stranger hears
// `peer_left` `reported` before any `error` `banned`. A report the store
// could not take leaves the room as it was and tells the reporter.
func (h *Hub) runReports(jobs []reportJob) {
	for _, j := range jobs {
		ctx, cancel := context.WithTimeout(context.Background(), moderationTimeout)
		ban, err := h.opt.Moderation.Report(ctx, j.rep, j.ip)
		cancel()
		h.mu.Lock()
		s := j.reporter
		if err != nil {
			h.log.Error("recording report failed", "room", j.rep.Room, "err", err)
			if h.sessions[s.id] == s {
				h.sendErr(s, wire.Errorf(wire.CodeUnavailable, "could not record the report; try again"), "report")
			}
			h.unlock()
			continue
		}
		h.m.reports.Inc()
		h.log.Info("report", "room", j.rep.Room, "reporter", j.rep.Reporter, "reported", j.rep.Reported, "reason", j.rep.Reason)
		if h.sessions[s.id] == s && s.room == j.room {
			h.endRoom(s, wire.ReasonReported)
			h.deferring = true
			h.join(context.Background(), s)
			h.deferring = false
		}
		if ban != nil {
			h.log.Warn("banned after reports", "session", ban.Session, "ip", ban.IPHash, "until", ban.Until, "ban", ban.ID)
			h.banEverywhere(*ban, j.node)
		}
		joins := h.joins
		h.joins = nil
		h.persist(s)
		h.unlock()
		h.runJoins(context.Background(), joins)
	}
}

// banEverywhere applies b here, or sends it to the node that holds the
// banned session (h.mu held).
func (h *Hub) banEverywhere(b moderation.Ban, node string) {
	if h.local(node) {
		h.applyBan(b)
		return
	}
	raw, err := json.Marshal(b)
	if err != nil {
		return
	}
	h.opt.Bus.Publish(node, Envelope{Type: envBan, To: b.Session, Frame: raw})
}

// ApplyBan acts on a ban an operator just added: the banned sessions of
// this node leave their room or queue now. Other nodes see the ban at
// their sessions' next queue or connect.
func (h *Hub) ApplyBan(b moderation.Ban) {
	h.mu.Lock()
	defer h.unlock()
	h.applyBan(b)
}

// applyBan takes the banned session, and for an operator's ban every
// session from the banned address, out of its room or queue. A ban from
// reports leaves the address's other live sessions alone (they may be
// other people behind one NAT); they meet the ban when they next queue
// or connect (h.mu held).
func (h *Hub) applyBan(b moderation.Ban) {
	ctx := context.Background()
	if c, ok := h.opt.Moderation.(interface{ Remember(moderation.Ban) }); ok {
		c.Remember(b) // a ban heard from another node holds here at once
	}
	for _, s := range h.sessions {
		hit := b.Session != "" && s.id == b.Session ||
			b.By == moderation.ByAdmin && b.IPHash != "" && s.ipHash == b.IPHash
		if !hit {
			continue
		}
		h.sendBanned(s, b, "")
		h.unqueue(ctx, s)
		h.endRoom(s, wire.ReasonBanned)
		s.requeue = false
		h.send(s, wire.ModeMsg{Type: wire.TypeIdle})
		h.persist(s)
	}
}

// HashIP is the salted hash bans and logs key an address on: that of the
// address's key, so one IPv6 address stands for its whole /64.
func (h *Hub) HashIP(ip string) string { return h.hashIP(ip) }
