package signal

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetchat/duet/wire"
)

// The nudity shield runs in the page (web/static/shield.js); the node only
// counts what it did, in a bounded label set, and remembers for the room
// that a side's shield flagged it, so that side's nudity report can be
// weighed as a shield report (moderation.shield_reports_to_ban).

// shieldReportReason is the report reason the shield's one-tap Report
// sends.
const shieldReportReason = "nudity"

func newShieldCounter() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "duet_shield_events_total",
		Help: "What browsers' nudity shields did (moderation.shield): blurred, unblurred, detected, revealed, skipped, unavailable, reported. Counts only: no image reaches the node.",
	}, []string{"event"})
	for _, e := range wire.ShieldEvents() {
		c.WithLabelValues(e) // zero series up front
	}
	return c
}

// shieldMode is welcome.features.shield: the operator's default.
func (h *Hub) shieldMode() string {
	if h.opt.Shield == "" {
		return wire.ShieldOff
	}
	return h.opt.Shield
}

// onShield counts one shield event of the sender's current room.
func (h *Hub) onShield(s *session, m *wire.Inbound) *wire.Error {
	r, e := h.roomOf(s, m)
	if e != nil {
		return e
	}
	if e := wire.ShieldEvent(m.Event); e != nil {
		return e
	}
	if m.Event == wire.ShieldDetected {
		r.shieldHit[r.index(s)] = true
	}
	h.m.shield.WithLabelValues(m.Event).Inc()
	return nil
}

// shieldReport says whether s's report in r is one its shield backs: a
// nudity report from the side whose shield flagged the room. It counts
// such a report.
func (h *Hub) shieldReport(s *session, r *room, reason string) bool {
	if reason != shieldReportReason || !r.shieldHit[r.index(s)] {
		return false
	}
	h.m.shield.WithLabelValues(wire.ShieldReported).Inc()
	return true
}
