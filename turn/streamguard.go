package turn

import (
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetchat/duet/internal/addrkey"
)

// guardKey is the address block a connection counts against: the IPv4
// address itself, or the IPv6 prefix the Keyer says one subscriber holds.
type guardKey = netip.Prefix

// connGuard caps concurrent TCP and TLS connections, per address block
// and in total, across every stream listener of one relay. Without a cap
// one host could hold every descriptor the process has.
type connGuard struct {
	keyer   addrkey.Keyer
	perAddr int // 0 = no cap
	total   int // 0 = no cap

	mu     sync.Mutex
	byAddr map[guardKey]int
	live   int
}

func newConnGuard(keyer addrkey.Keyer, perAddr, total int) *connGuard {
	return &connGuard{keyer: keyer, perAddr: perAddr, total: total, byAddr: map[guardKey]int{}}
}

// admit counts a new connection from a in, or names the cap it is over.
func (g *connGuard) admit(a net.Addr) (guardKey, string) {
	var key guardKey
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			key = g.keyer.Prefix(ip)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.total > 0 && g.live >= g.total {
		return key, "total_cap"
	}
	if g.perAddr > 0 && g.byAddr[key] >= g.perAddr {
		return key, "per_address_cap"
	}
	g.live++
	g.byAddr[key]++
	return key, ""
}

func (g *connGuard) release(key guardKey) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.live--
	if g.byAddr[key] <= 1 {
		delete(g.byAddr, key)
	} else {
		g.byAddr[key]--
	}
}

func (g *connGuard) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.live
}

// streamMetrics say what the stream framer closed or dropped, and why.
type streamMetrics struct {
	closed  *prometheus.CounterVec
	dropped *prometheus.CounterVec
}

func newStreamMetrics(reg prometheus.Registerer, guard *connGuard) (*streamMetrics, error) {
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
	}, func() float64 { return float64(guard.count()) })
	for _, c := range []prometheus.Collector{m.closed, m.dropped, live} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering TURN stream metrics: %w", err)
		}
	}
	for _, r := range []string{
		"per_address_cap", "total_cap", // refused at accept
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
