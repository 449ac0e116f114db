package node

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// pathMetrics are the relayed paths' node totals: rooms by media path (at
// scrape time) and a histogram of relayed rooms' bitrates, sampled every
// few seconds. Rooms are never labels.
type pathMetrics struct {
	n       *Node
	byPath  *prometheus.Desc
	bitrate prometheus.Histogram
}

func newPathMetrics(n *Node) (*pathMetrics, error) {
	m := &pathMetrics{
		n: n,
		byPath: prometheus.NewDesc("duet_rooms_by_path", "Live rooms by media path (p2p, turn, sfu).",
			[]string{"path"}, nil),
		bitrate: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "duet_relayed_room_bitrate_bps",
			Help:    "Bitrate of each relayed room (both directions), sampled every 5 seconds.",
			Buckets: prometheus.ExponentialBucketsRange(16e3, 16e6, 12),
		}),
	}
	for _, c := range []prometheus.Collector{m, m.bitrate} {
		if err := n.reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Describe implements prometheus.Collector.
func (m *pathMetrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.byPath }

// Collect implements prometheus.Collector.
func (m *pathMetrics) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]float64{"p2p": 0, "turn": 0, "sfu": 0}
	for _, info := range m.n.hub.Rooms() {
		counts[m.n.roomView(info).Path]++
	}
	for path, c := range counts {
		ch <- prometheus.MustNewConstMetric(m.byPath, prometheus.GaugeValue, c, path)
	}
}

// sample observes every relayed room's bitrate until ctx ends.
func (m *pathMetrics) sample(ctx context.Context) error {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			for _, info := range m.n.hub.Rooms() {
				if v := m.n.roomView(info); v.Path != "p2p" {
					m.bitrate.Observe(v.AToB.BitrateBPS + v.BToA.BitrateBPS)
				}
			}
		}
	}
}
