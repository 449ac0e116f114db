package node

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// The HTTPS listener runs TLS itself and then looks at what the client
// sends. Browsers' TURN-over-TLS clients (Chromium's and Firefox's) offer
// no ALPN, so ALPN alone cannot tell TURN from HTTP: a connection that
// negotiated http/1.1 is HTTP, one that negotiated stun.turn (RFC 7443)
// is TURN, and one that negotiated nothing is sorted by its first byte. A
// TURN client always starts with a STUN request (first byte 0x00-0x01; a
// ChannelData frame needs a channel bound first), an HTTP client with a
// method name (a capital letter).

const (
	alpnHTTP1 = "http/1.1"
	alpnTURN  = "stun.turn"
	alpnACME  = "acme-tls/1"
)

// httpsTLS is the HTTPS listener's TLS configuration: the ACME
// certificate through getCert, or http's certificate files. HTTP/2 is
// not offered: the WebSocket needs HTTP/1.1, and the page is small.
func httpsTLS(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error), acme bool) *tls.Config {
	protos := []string{alpnHTTP1, alpnTURN}
	if acme {
		protos = append(protos, alpnACME)
	}
	return &tls.Config{GetCertificate: getCert, NextProtos: protos, MinVersion: tls.VersionTLS12}
}

// fileCert loads http.tls_cert_file/tls_key_file, and names the host its
// certificate is for (for the turns: URL).
func fileCert(certFile, keyFile string) (func(*tls.ClientHelloInfo) (*tls.Certificate, error), string, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, "", fmt.Errorf("http.tls_cert_file: loading certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, "", fmt.Errorf("http.tls_cert_file: %w", err)
	}
	host := ""
	switch {
	case len(leaf.DNSNames) > 0:
		host = leaf.DNSNames[0]
	case len(leaf.IPAddresses) > 0:
		host = leaf.IPAddresses[0].String()
	}
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }, host, nil
}

// tlsMux is the HTTPS listener: net/http accepts the HTTP connections
// from it, and the TURN ones go to turn (nil: none expected; they are
// then served as HTTP, which answers 400).
type tlsMux struct {
	inner     net.Listener // the connection caps' listener
	config    *tls.Config
	turn      func(c, tcp net.Conn) error
	handshake time.Duration // TLS handshake and first bytes
	log       *slog.Logger
	errorLog  *log.Logger // net/http's, which hashes client addresses
	sorted    *prometheus.CounterVec

	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newTLSMux(inner net.Listener, config *tls.Config, turn func(c, tcp net.Conn) error, handshake time.Duration,
	slog *slog.Logger, errorLog *log.Logger, reg prometheus.Registerer) *tlsMux {
	m := &tlsMux{
		inner: inner, config: config, turn: turn, handshake: handshake, log: slog, errorLog: errorLog,
		conns: make(chan net.Conn), done: make(chan struct{}),
	}
	m.sorted = registerOrReuse(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "duet_https_connections_total",
		Help: "Connections on the HTTPS listener after the TLS handshake: http, turn (handed to the relay), acme (a TLS-ALPN-01 check), failed (handshake or first bytes not in time).",
	}, []string{"kind"}))
	for _, k := range []string{"http", "turn", "acme", "failed"} {
		m.sorted.WithLabelValues(k)
	}
	go m.run()
	return m
}

// run accepts and sorts each connection on its own goroutine, so a slow
// handshake holds up no one.
func (m *tlsMux) run() {
	var backoff time.Duration
	for {
		c, err := m.inner.Accept()
		if errors.Is(err, net.ErrClosed) {
			m.Close()
			return
		}
		if err != nil {
			// Out of descriptors, or a client that reset before accept:
			// the listener stays, as net/http's own loop would keep it.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			m.log.Warn("HTTPS accept failed; retrying", "err", err, "retry_in", backoff.String())
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		go m.sort(c)
	}
}

func (m *tlsMux) sort(tcp net.Conn) {
	_ = tcp.SetDeadline(time.Now().Add(m.handshake))
	tc := tls.Server(tcp, m.config)
	if err := tc.Handshake(); err != nil {
		m.sorted.WithLabelValues("failed").Inc()
		// As net/http would have: a hint for plain HTTP, and a log line
		// through its error log (client addresses hashed).
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			_, _ = io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		}
		m.errorLog.Printf("http: TLS handshake error from %s: %v", tcp.RemoteAddr(), err)
		_ = tcp.Close()
		return
	}
	var conn net.Conn = tc
	isTURN := false
	switch tc.ConnectionState().NegotiatedProtocol {
	case alpnACME: // the CA's check was the handshake itself
		m.sorted.WithLabelValues("acme").Inc()
		_ = tcp.Close()
		return
	case alpnHTTP1:
	case alpnTURN:
		isTURN = true
	default:
		head := make([]byte, 512)
		n, err := tc.Read(head)
		if n == 0 {
			m.sorted.WithLabelValues("failed").Inc()
			m.log.Debug("HTTPS connection sent nothing after the handshake", "err", err)
			_ = tcp.Close()
			return
		}
		isTURN = head[0]>>6 == 0
		conn = &peekedConn{Conn: tc, head: head[:n]}
	}
	alpn := tc.ConnectionState().NegotiatedProtocol
	if isTURN && m.turn != nil {
		m.sorted.WithLabelValues("turn").Inc()
		m.log.Debug("TURN over TLS on the HTTPS port", "alpn", alpn, "sni", tc.ConnectionState().ServerName)
		// The relay counts it from here, under its own caps and
		// deadlines (it sets the authentication deadline).
		if lc, ok := tcp.(*limitedConn); ok {
			lc.release()
		}
		if err := m.turn(conn, tcp); err != nil {
			m.log.Debug("TURN connection on the HTTPS port not taken", "err", err)
		}
		return
	}
	m.sorted.WithLabelValues("http").Inc()
	// net/http sets its own deadlines for each request.
	_ = tcp.SetDeadline(time.Time{})
	select {
	case m.conns <- conn:
	case <-m.done:
		_ = tcp.Close()
	}
}

// looksLikeHTTP: the first five bytes of a plain-HTTP request.
func looksLikeHTTP(h [5]byte) bool {
	switch string(h[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// Accept returns the next HTTP connection, its TLS handshake done.
func (m *tlsMux) Accept() (net.Conn, error) {
	select {
	case c := <-m.conns:
		return c, nil
	case <-m.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting; connections already handed on are not touched.
func (m *tlsMux) Close() error {
	var err error
	m.once.Do(func() {
		close(m.done)
		err = m.inner.Close()
	})
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("closing the HTTPS listener: %w", err)
	}
	return nil
}

func (m *tlsMux) Addr() net.Addr { return m.inner.Addr() }

// peekedConn gives back the bytes read to sort the connection before the
// rest of the stream. It keeps *tls.Conn's methods (NetConn for the
// connection caps, ConnectionState).
type peekedConn struct {
	*tls.Conn
	head []byte
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(p, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// setupHTTPS prepares what https:// is served with: the ACME manager
// (binding http.acme.http_listen) or http's certificate files.
func (n *Node) setupHTTPS() error {
	c := n.cfg.HTTP
	switch {
	case c.ACME.Enabled:
		var rdb redis.UniversalClient
		if n.redis != nil {
			rdb = n.redis.rdb
		}
		m, err := newACME(n.cfg, n.log.With("role", "acme"), n.reg, rdb)
		if err != nil {
			return err
		}
		n.acme = m
		n.httpsTLS = httpsTLS(m.getCertificate, true)
		n.httpsHost = c.ACME.Domains[0]
	case c.TLSCertFile != "":
		get, host, err := fileCert(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return err
		}
		n.httpsTLS = httpsTLS(get, false)
		n.httpsHost = host
	}
	return nil
}

// httpsListener wraps the capped listener in TLS when the node serves
// HTTPS, with TURN handed to the relay when turn.on_https_port is on.
func (n *Node) httpsListener(lim net.Listener, errorLog *log.Logger) net.Listener {
	if n.httpsTLS == nil {
		return lim
	}
	var toTURN func(c, tcp net.Conn) error
	if n.turn != nil && n.cfg.TURN.OnHTTPSPort {
		toTURN = n.turn.HandOff
		port := lim.Addr().(*net.TCPAddr).Port
		if n.httpsHost == "" {
			n.log.Warn("TURN on the HTTPS port is not offered to clients: http.tls_cert_file names no host for the turns: URL")
		} else {
			n.turn.ServeHTTPSPort(n.httpsHost, port)
			n.log.Info("TURN over TLS on the HTTPS port", "url_host", n.httpsHost, "port", port)
		}
	}
	return newTLSMux(lim, n.httpsTLS, toTURN, readHeaderTimeout, n.log.With("role", "https"), errorLog, n.reg)
}
