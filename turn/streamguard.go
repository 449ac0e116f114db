package turn

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetchat/duet/internal/connlimit"
)

// streamMetrics say what the stream framer closed or dropped, and why.
type streamMetrics struct {
	closed  *prometheus.CounterVec
	dropped *prometheus.CounterVec
}

func newStreamMetrics(reg prometheus.Registerer, guard *connlimit.Guard) (*streamMetrics, error) {
	m := &streamMetrics{
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_turn_tcp_closed_total",
			Help: "TURN TCP/TLS connections closed, by reason (per_address_cap, total_cap, bad_frame, bad_length, auth_timeout, tls_handshake, idle, ended, shutdown).",
		}, []string{"reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_turn_tcp_frames_dropped_total",
			Help: "TURN TCP/TLS frames passed over without closing the connection, by reason (oversize, ambiguous).",
		}, []string{"reason"}),
	}
	live := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "duet_turn_tcp_connections",
		Help: "Open TURN TCP/TLS connections.",
	}, func() float64 { return float64(guard.Count()) })
	for _, c := range []prometheus.Collector{m.closed, m.dropped, live} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering TURN stream metrics: %w", err)
		}
	}
	for _, r := range []string{
		connlimit.PerAddress, connlimit.Total, // refused at accept
		"bad_frame", "bad_length", // neither STUN nor ChannelData; a length that cannot be valid
		"auth_timeout", "tls_handshake", "idle", // deadlines, a failed handshake
		"ended", "shutdown", // the client or network ended it; the relay stopped
	} {
		m.closed.WithLabelValues(r)
	}
	for _, r := range []string{"oversize", "ambiguous"} {
		m.dropped.WithLabelValues(r)
	}
	return m, nil
}
