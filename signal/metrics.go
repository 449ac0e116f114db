package signal

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetchat/duet/wire"
)

// metrics are the hub's Prometheus series. Room codes and session ids are
// never labels: cardinality stays bounded by message types and codes.
type metrics struct {
	messages     *prometheus.CounterVec
	byType       map[string]prometheus.Counter // messages' series, resolved once: no label hashing per frame
	errors       *prometheus.CounterVec
	refused      *prometheus.CounterVec
	rooms        *prometheus.GaugeVec
	roomsTotal   *prometheus.CounterVec
	rateLimited  prometheus.Counter
	resumes      prometheus.Counter
	reports      prometheus.Counter
	staleMatches prometheus.Counter
	faceChecks   *prometheus.CounterVec
	shield       *prometheus.CounterVec // duet_shield_events_total
	faceRecheck  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, h *Hub) (*metrics, error) {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_messages_total", Help: "Client messages received, by type.",
		}, []string{"type"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_errors_total", Help: "Error messages sent to clients, by code.",
		}, []string{"code"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_ws_refused_total", Help: "WebSocket upgrades refused, by reason.",
		}, []string{"reason"}),
		rooms: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "duet_rooms", Help: "Open rooms, by mode.",
		}, []string{"mode"}),
		roomsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_rooms_opened_total", Help: "Rooms opened, by mode.",
		}, []string{"mode"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duet_rate_limited_total", Help: "Client messages dropped by a rate limit.",
		}),
		resumes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duet_resumes_total", Help: "Sessions resumed on a new socket.",
		}),
		reports: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duet_reports_total", Help: "Reports recorded.",
		}),
		faceChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_face_checks_total", Help: "Video queues by what the browser's own face check said (signal.face_check).",
		}, []string{"result"}),
		faceRecheck: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_face_rechecks_total", Help: "What browsers' face re-checks during video calls saw: missing, back, left (signal.face_check_interval).",
		}, []string{"event"}),
		shield: newShieldCounter(),
		staleMatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duet_stale_matches_total", Help: "Matches dropped because a side had left; the other side was re-queued.",
		}),
	}
	types := wire.ClientTypes()
	m.byType = make(map[string]prometheus.Counter, len(types)+1)
	for _, t := range types {
		m.byType[t] = m.messages.WithLabelValues(t)
	}
	m.byType["unknown"] = m.messages.WithLabelValues("unknown")
	// Zero series up front, so dashboards and alerts see every code.
	for _, code := range wire.Codes() {
		m.errors.WithLabelValues(code)
	}
	if reg == nil {
		return m, nil
	}
	sessions := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "duet_sessions", Help: "Sessions with a live socket.",
	}, func() float64 { return float64(h.Stats().Online) })
	for _, c := range []prometheus.Collector{
		m.messages, m.errors, m.refused, m.rooms, m.roomsTotal, m.rateLimited,
		m.resumes, m.reports, m.staleMatches, m.faceChecks, m.shield, m.faceRecheck, sessions,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("signal: registering metrics: %w", err)
		}
	}
	return m, nil
}

// message counts one client message; an unknown type counts as "unknown".
func (m *metrics) message(typ string) {
	c, ok := m.byType[typ]
	if !ok {
		c = m.byType["unknown"]
	}
	c.Inc()
}

func (m *metrics) roomStarted(mode string) {
	m.rooms.WithLabelValues(mode).Inc()
	m.roomsTotal.WithLabelValues(mode).Inc()
}

func (m *metrics) roomEnded(mode string) { m.rooms.WithLabelValues(mode).Dec() }
