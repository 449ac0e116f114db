package turn

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are node-wide: no room or session label ever.
type metrics struct {
	authFailures     *prometheus.CounterVec
	quotaRefusals    *prometheus.CounterVec
	deniedPeers      prometheus.Counter
	allocationsTotal prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, acc *accounting) (*metrics, error) {
	m := &metrics{
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_turn_auth_failures_total",
			Help: "TURN requests refused at authentication, by reason (malformed, expired, bad_password, revoked: the room ended, banned).",
		}, []string{"reason"}),
		quotaRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_turn_quota_refusals_total",
			Help: "TURN allocations refused by quota, by scope (user: one session, address: one client address, total: the node).",
		}, []string{"scope"}),
		deniedPeers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duet_turn_denied_peers_total",
			Help: "CreatePermission/ChannelBind requests refused by the peer policy.",
		}),
		allocationsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duet_turn_allocations_created_total",
			Help: "TURN allocations created.",
		}),
	}
	ownDrops := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "duet_turn_own_address_drops_total",
		Help: "Relayed datagrams dropped because they were addressed to the node itself outside the relay ports.",
	}, func() float64 { return float64(acc.dropped.Load()) })
	unpermitted := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "duet_turn_unpermitted_drops_total",
		Help: "Datagrams that reached a relay socket from a peer without a permission, or an allocation whose room ended: dropped, and not in any room's figures.",
	}, func() float64 { return float64(acc.unpermitted.Load()) })
	cut := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "duet_turn_allocations_cut_total",
		Help: "Live allocations whose room ended: they relay nothing more and lapse at their lifetime.",
	}, func() float64 { return float64(acc.cuts.Load()) })
	for _, c := range []prometheus.Collector{m.authFailures, m.quotaRefusals, m.deniedPeers, m.allocationsTotal, relayCollector{acc}, ownDrops, unpermitted, cut} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering TURN metrics: %w", err)
		}
	}
	for _, r := range []string{"malformed", "expired", "bad_password", "revoked", "banned"} {
		m.authFailures.WithLabelValues(r)
	}
	for _, s := range []string{"user", "address", "total"} {
		m.quotaRefusals.WithLabelValues(s)
	}
	return m, nil
}

var (
	allocDesc = prometheus.NewDesc("duet_turn_allocations",
		"Live TURN allocations by client transport.", []string{"transport"}, nil)
	bytesDesc = prometheus.NewDesc("duet_turn_relayed_bytes_total",
		"Bytes relayed, by direction (to_peer, from_peer) and client transport.", []string{"direction", "transport"}, nil)
	packetsDesc = prometheus.NewDesc("duet_turn_relayed_packets_total",
		"Packets relayed, by direction (to_peer, from_peer) and client transport.", []string{"direction", "transport"}, nil)
)

// relayCollector reads the per-allocation atomics at scrape time, so the
// relay path pays for no metric updates.
type relayCollector struct{ acc *accounting }

func (relayCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- allocDesc
	ch <- bytesDesc
	ch <- packetsDesc
}

func (c relayCollector) Collect(ch chan<- prometheus.Metric) {
	allocs, to, from := c.acc.nodeTotals()
	for _, tr := range []string{"udp", "tcp", "tls"} {
		ch <- prometheus.MustNewConstMetric(allocDesc, prometheus.GaugeValue, float64(allocs[tr]), tr)
		for dir, t := range map[string]Totals{"to_peer": to[tr], "from_peer": from[tr]} {
			ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.CounterValue, float64(t.Bytes), dir, tr)
			ch <- prometheus.MustNewConstMetric(packetsDesc, prometheus.CounterValue, float64(t.Packets), dir, tr)
		}
	}
}
