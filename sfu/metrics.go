package sfu

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetchat/duet/internal/connlimit"
)

// metrics are node totals; rooms are never labels.
type metrics struct {
	rooms   prometheus.Gauge
	bytes   *prometheus.CounterVec
	packets *prometheus.CounterVec
	plis    prometheus.Counter
	// remote candidates dropped before pion saw them, by reason
	drops *prometheus.CounterVec
	// ICE-TCP connections refused at accept, by cap
	tcpRefused *prometheus.CounterVec
	// RTP packets the shortcut forwarded off the socket (shortcut.go)
	shortcut, shortcutDropped, shortcutQueueFull prometheus.Counter
	// by kind index: audio, video
	b, p [2]prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		rooms: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "duet_sfu_rooms", Help: "Rooms whose media the SFU forwards now.",
		}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_sfu_forwarded_bytes_total", Help: "RTP bytes forwarded by the SFU, by kind.",
		}, []string{"kind"}),
		packets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_sfu_forwarded_packets_total", Help: "RTP packets forwarded by the SFU, by kind.",
		}, []string{"kind"}),
		plis: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duet_sfu_keyframe_requests_total", Help: "Keyframe requests (PLI) the SFU sent upstream.",
		}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_sfu_candidates_dropped_total",
			Help: "Remote ICE candidates the SFU dropped before pion saw them, by reason.",
		}, []string{"reason"}),
	}
	m.shortcut = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "duet_sfu_shortcut_packets_total",
		Help: "RTP packets the SFU took off its socket and decrypted and forwarded itself (its shortcut); the rest of duet_sfu_forwarded_packets_total went through pion's receive path.",
	})
	m.shortcutDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "duet_sfu_shortcut_dropped_total",
		Help: "RTP packets from a connected client's address that the SFU's shortcut dropped: they failed authentication or replayed an earlier packet.",
	})
	m.shortcutQueueFull = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "duet_sfu_shortcut_queue_full_total",
		Help: "RTP packets the SFU dropped because the shortcut's forwarding workers were that far behind (the node is short of CPU).",
	})
	m.tcpRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "duet_sfu_tcp_refused_total",
		Help: "ICE-TCP connections the SFU refused at accept, by cap (per_address_cap, total_cap).",
	}, []string{"reason"})
	m.tcpRefused.WithLabelValues(connlimit.PerAddress)
	m.tcpRefused.WithLabelValues(connlimit.Total)
	for _, r := range dropReasons {
		m.drops.WithLabelValues(r)
	}
	for k, kind := range []string{"audio", "video"} {
		m.b[k], m.p[k] = m.bytes.WithLabelValues(kind), m.packets.WithLabelValues(kind)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.rooms, m.bytes, m.packets, m.plis, m.drops, m.tcpRefused, m.shortcut, m.shortcutDropped, m.shortcutQueueFull} {
			if err := reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					return nil, err
				}
			}
		}
	}
	return m, nil
}

func (m *metrics) forwarded(k, n int) {
	m.b[k].Add(float64(n))
	m.p[k].Inc()
}

func (m *metrics) dropped(reason string) {
	m.drops.WithLabelValues(reason).Inc()
}
