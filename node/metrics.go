package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/duetchat/duet/internal/reuseport"
)

// The operator's endpoints, /metrics and the admin's pprof profiles, live
// on the public HTTP listener by default. With metrics.listen set they
// move to a listener of their own (a private or loopback address that
// Prometheus scrapes), served by a second plain-HTTP server, and the
// public listener answers 404 for them.

// opsRoutes registers the operator's endpoints on mux.
func (n *Node) opsRoutes(mux *http.ServeMux) {
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{}))
	// Profiles for operators chasing a slow node; behind the admin token.
	mux.HandleFunc("GET /debug/pprof/", n.adminOnly(pprof.Index))
	mux.HandleFunc("GET /debug/pprof/profile", n.adminOnly(pprof.Profile))
	mux.HandleFunc("GET /debug/pprof/trace", n.adminOnly(pprof.Trace))
}

// profileLocks turns on Go's lock-contention sampling when
// metrics.lock_profile asks for it. The rates are the runtime's, so they
// hold for the whole process: the last node started decides.
func (n *Node) profileLocks() {
	if !n.cfg.Metrics.LockProfile {
		return
	}
	// Every contended mutex, and blocking events of 10 µs or more (a
	// channel or a lock wait shorter than that is not what slows a node).
	runtime.SetMutexProfileFraction(1)
	runtime.SetBlockProfileRate(int((10 * time.Microsecond).Nanoseconds()))
}

// listenMetrics binds metrics.listen, when set, so that New fails at once
// on an address that is taken or not this host's. With http.reuse_port
// it binds with SO_REUSEPORT too: the next version of duet starting
// beside this one during a rolling restart needs the same address.
func (n *Node) listenMetrics() error {
	addr := n.cfg.Metrics.Listen
	if addr == "" {
		return nil
	}
	var lc net.ListenConfig
	if n.cfg.HTTP.ReusePort && reuseport.Supported {
		lc.Control = reuseport.Control
	}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics.listen: %w", err)
	}
	n.metricsLn = ln
	n.opsMux = http.NewServeMux()
	return nil
}

// MetricsAddr is the address /metrics is served on when metrics.listen
// is set (its real port when that asked for 0); nil when /metrics is on
// the main listener.
func (n *Node) MetricsAddr() net.Addr {
	if n.metricsLn == nil {
		return nil
	}
	return n.metricsLn.Addr()
}

// serveMetrics starts the metrics server on the bound listener; nil
// without one. Its timeouts and error log are the main server's; it has
// no connection caps (it is not for the public).
func (n *Node) serveMetrics() *metricsServer {
	if n.metricsLn == nil {
		return nil
	}
	m := &metricsServer{
		srv: &http.Server{
			Handler:           writeDeadlines(n.opsMux, writeTimeout),
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       readTimeout,
			IdleTimeout:       n.cfg.HTTP.IdleTimeout,
			ErrorLog:          n.httpErrorLog(),
		},
		done: make(chan struct{}),
	}
	ln := n.metricsLn
	go func() {
		defer close(m.done)
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("metrics listener stopped; /metrics is not served", "addr", ln.Addr().String(), "err", err)
		}
	}()
	n.log.Info("metrics listening", "addr", ln.Addr().String())
	return m
}

type metricsServer struct {
	srv  *http.Server
	done chan struct{}
}

// shutdown lets scrapes in flight finish while ctx lasts, then cuts what
// is left (a long profile), and waits for the server to stop.
func (m *metricsServer) shutdown(ctx context.Context) {
	if m == nil {
		return
	}
	if err := m.srv.Shutdown(ctx); err != nil {
		_ = m.srv.Close()
	}
	<-m.done
}

// closeMetrics releases the metrics listener of a node that never served
// (once served, its server's shutdown has closed it already).
func (n *Node) closeMetrics() {
	if n.metricsLn != nil {
		_ = n.metricsLn.Close()
	}
}
