package node

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/internal/addrkey"
	"github.com/duetchat/duet/internal/reuseport"
)

// Listen binds the HTTP address. With http.reuse_port the socket carries
// SO_REUSEPORT: a second duet (the next version, on the same Redis) binds
// the same address and the kernel hands it new connections, while this
// one drains - the clients it tells to reconnect land on the new one.
func Listen(ctx context.Context, c configs.HTTP) (net.Listener, error) {
	var lc net.ListenConfig
	if c.ReusePort {
		if !reuseport.Supported {
			return nil, fmt.Errorf("http.reuse_port: SO_REUSEPORT is not available on this platform")
		}
		lc.Control = reuseport.Control
	}
	ln, err := lc.Listen(ctx, "tcp", c.Listen)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) && !c.ReusePort {
			return nil, fmt.Errorf("listening on %s: %w (to run two duets on one address, set http.reuse_port on both)", c.Listen, err)
		}
		return nil, fmt.Errorf("listening on %s: %w", c.Listen, err)
	}
	return ln, nil
}

// Timeouts of the HTTP server that are not config keys (variables for
// the tests, read when a server is built).
var (
	// readHeaderTimeout bounds a request's headers (and a TLS handshake).
	readHeaderTimeout = 10 * time.Second
	// readTimeout bounds a whole request, body included, so a trickled
	// body cannot hold a connection busy. A WebSocket sets its own read
	// deadline before its first read.
	readTimeout = 30 * time.Second
	// writeTimeout bounds writing one response (see writeDeadlines).
	writeTimeout = 30 * time.Second
)

// httpServer builds the server Serve runs and the listener it serves: ln
// wrapped in the connection caps. A server-wide WriteTimeout would also
// stay on a hijacked WebSocket's connection and cut long pprof profiles,
// so each plain request gets its write deadline from writeDeadlines.
func (n *Node) httpServer(ln net.Listener) (*http.Server, *connLimiter) {
	lim := n.connLimiter(ln)
	srv := &http.Server{
		Handler:           writeDeadlines(n.mux, writeTimeout),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       n.cfg.HTTP.IdleTimeout,
		ConnState:         lim.connState,
		ErrorLog:          n.httpErrorLog(),
	}
	return srv, lim
}

// writeDeadlines gives every response timeout to be written, except
// the WebSocket upgrade (whose deadline is cleared: the socket's writer
// sets one per frame, and a deadline left from an earlier request on a
// keep-alive connection must not follow it) and the admin's pprof
// profiles and traces, which run for as long as asked. (The read timeout
// does not reach a running handler: net/http clears the read deadline
// once the request is read.)
func writeDeadlines(next http.Handler, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		switch {
		case r.URL.Path == "/ws", strings.HasPrefix(r.URL.Path, "/debug/pprof/"):
			_ = rc.SetWriteDeadline(time.Time{})
		default:
			_ = rc.SetWriteDeadline(time.Now().Add(timeout))
		}
		next.ServeHTTP(w, r)
	})
}

// connReserve is how many descriptors the automatic http.max_connections
// leaves for everything else (relay and SFU sockets, Redis, logs, and the
// one that accepts /healthz): 256, or a quarter of a smaller limit.
func connReserve(limit int) int { return min(256, limit/4) }

// connCaps works out the node-wide and per-address connection caps.
// The node-wide one never exceeds what the open-file limit leaves room
// for: past it accept fails with EMFILE and nothing, /healthz included,
// gets in until something closes.
func connCaps(c *configs.Config, fileLimit int) (maxConns, perIP int, lowered bool) {
	maxConns = c.HTTP.MaxConnections
	if fileLimit > 0 {
		auto := max(fileLimit-connReserve(fileLimit), 1)
		if maxConns == 0 || maxConns > auto {
			lowered = maxConns != 0
			maxConns = auto
		}
	}
	if maxConns == 0 {
		maxConns = math.MaxInt
	}
	perIP = c.HTTP.MaxConnectionsPerIP
	if perIP == 0 {
		perIP = c.Limits.ConnectionsPerIP + 16
	}
	return maxConns, perIP, lowered
}

// connMetrics count the listener's work.
type connMetrics struct {
	open    prometheus.Gauge
	limit   prometheus.Gauge
	refused *prometheus.CounterVec
	evicted prometheus.Counter
}

func (n *Node) newConnMetrics() *connMetrics {
	m := &connMetrics{
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "duet_http_connections", Help: "Open HTTP connections, WebSockets included.",
		}),
		limit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "duet_http_connections_limit", Help: "The cap on open HTTP connections (http.max_connections, or what the open-file limit leaves room for).",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_http_connections_refused_total", Help: "New HTTP connections closed at once: over the node's cap with none idle to close (max), or over the address's (per_ip).",
		}, []string{"reason"}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duet_http_connections_evicted_total", Help: "Idle HTTP connections closed to make room for a new one at the node's cap.",
		}),
	}
	for _, reason := range []string{"max", "per_ip"} {
		m.refused.WithLabelValues(reason)
	}
	m.open = registerOrReuse(n.reg, m.open)
	m.limit = registerOrReuse(n.reg, m.limit)
	m.refused = registerOrReuse(n.reg, m.refused)
	m.evicted = registerOrReuse(n.reg, m.evicted)
	return m
}

// registerOrReuse registers c, or returns the collector already there (a
// node served twice).
func registerOrReuse[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(C); ok {
				return old
			}
		}
	}
	return c
}

// connLimiter wraps the HTTP listener. It counts every open connection
// until it closes (a hijacked WebSocket included), closes at once a new
// one over its address's cap, and at the node's cap makes room by
// closing the connection idle longest - a keep-alive between requests or
// one that has not sent its first request - or, with none idle, closes
// the new one. So idle connections cannot crowd out /healthz or a user.
type connLimiter struct {
	net.Listener
	maxConns, perIP int
	keys            addrkey.Keyer
	exempt          []netip.Prefix // trusted proxies carry many clients
	m               *connMetrics

	mu    sync.Mutex
	open  int
	byKey map[string]int
	idle  list.List // of *limitedConn, idle longest first
}

func (n *Node) connLimiter(ln net.Listener) *connLimiter {
	keys, err := addrkey.New(n.cfg.Limits.IPv6Prefix)
	if err != nil {
		keys, _ = addrkey.New(0) // validated by configs
	}
	maxConns, perIP, lowered := connCaps(n.cfg, openFileLimit())
	if lowered {
		n.log.Warn("http.max_connections lowered to what the open-file limit leaves room for",
			"configured", n.cfg.HTTP.MaxConnections, "using", maxConns)
	}
	l := &connLimiter{
		Listener: ln, maxConns: maxConns, perIP: perIP, keys: keys,
		m: n.newConnMetrics(), byKey: make(map[string]int),
	}
	for _, p := range n.cfg.HTTP.TrustedProxies {
		if pr, err := configs.ParsePrefix(p); err == nil {
			l.exempt = append(l.exempt, pr)
		}
	}
	if maxConns < math.MaxInt {
		l.m.limit.Set(float64(maxConns))
	}
	return l
}

// limitedConn is one counted connection.
type limitedConn struct {
	net.Conn
	l    *connLimiter
	key  string        // the address's key; "" for a trusted proxy
	elem *list.Element // in l.idle while idle; l.mu
	gone bool          // closed; l.mu
	once sync.Once
}

// Accept returns the next connection within the caps; the ones over
// them are closed here. Errors (EMFILE included) go back to net/http,
// which retries them with a growing pause (5ms doubling to 1s).
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if lc := l.admit(c); lc != nil {
			return lc, nil
		}
	}
}

func (l *connLimiter) admit(c net.Conn) *limitedConn {
	key := ""
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		a := ap.Addr().Unmap()
		if !slices.ContainsFunc(l.exempt, func(p netip.Prefix) bool { return p.Contains(a) }) {
			key = l.keys.Prefix(a).String()
		}
	}
	l.mu.Lock()
	if key != "" && l.byKey[key] >= l.perIP {
		l.mu.Unlock()
		l.m.refused.WithLabelValues("per_ip").Inc()
		_ = c.Close()
		return nil
	}
	var victim *limitedConn
	if l.open >= l.maxConns {
		front := l.idle.Front()
		if front == nil {
			l.mu.Unlock()
			l.m.refused.WithLabelValues("max").Inc()
			_ = c.Close()
			return nil
		}
		victim = front.Value.(*limitedConn)
		l.idle.Remove(front)
		victim.elem = nil
	}
	lc := &limitedConn{Conn: c, l: l, key: key}
	// Until its first request a new connection is as idle as a keep-alive.
	lc.elem = l.idle.PushBack(lc)
	l.open++
	if key != "" {
		l.byKey[key]++
	}
	l.mu.Unlock()
	l.m.open.Inc()
	if victim != nil {
		l.m.evicted.Inc()
		_ = victim.Close()
	}
	return lc
}

// connState follows net/http's view of each connection: only idle ones
// (new or between requests) may be closed to make room.
func (l *connLimiter) connState(c net.Conn, s http.ConnState) {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok { // TLS
		c = tc.NetConn()
	}
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if lc.gone {
		return
	}
	switch s {
	case http.StateActive, http.StateHijacked:
		if lc.elem != nil {
			l.idle.Remove(lc.elem)
			lc.elem = nil
		}
	case http.StateIdle:
		if lc.elem != nil {
			l.idle.Remove(lc.elem)
		}
		lc.elem = l.idle.PushBack(lc)
	}
}

// Close releases the connection's place, once.
func (c *limitedConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// release gives the connection's place back without closing it: a TURN
// connection on the HTTPS port leaves for the relay, which counts it
// under its own caps (turn.tcp_connections_per_ip).
func (c *limitedConn) release() {
	c.once.Do(func() {
		l := c.l
		l.mu.Lock()
		c.gone = true
		if c.elem != nil {
			l.idle.Remove(c.elem)
			c.elem = nil
		}
		l.open--
		if c.key != "" {
			if l.byKey[c.key]--; l.byKey[c.key] <= 0 {
				delete(l.byKey, c.key)
			}
		}
		l.mu.Unlock()
		l.m.open.Dec()
	})
}
