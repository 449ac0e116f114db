package turn

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duetchat/duet/internal/connlimit"
)

// TURN over TCP and TLS is framed here, before pion sees a byte.
//
// pion/turn v4.1.4 reads every stream connection through its STUNConn,
// which adds header and padding to the 16-bit length in 16 bits: a
// ChannelData length of 0xFFF9-0xFFFC, or a STUN length of 0xFFEC, wraps
// to a frame of 0 bytes, ReadFrom returns 0 forever, and the server's
// read loop spins a core for good (lengths just above wrap to a few bytes
// and put the stream out of step). STUNConn also calls itself
// once per short read until a frame is complete, so a client trickling a
// long frame grows that goroutine's stack without bound. So each Read of
// a streamConn returns exactly one whole, valid frame: STUNConn always
// finds a complete frame in one read and never wraps or recurses deeply.

const (
	// streamMTU is the buffer pion's read loop reads every connection
	// into (ServerConfig.InboundMTU, set to this same constant so the two
	// cannot drift). pion discards anything that fills it, so a frame of
	// streamMTU bytes or more is never worth holding. WebRTC keeps its
	// packets near 1200 bytes; 1600 leaves room for a full 1500-byte
	// Ethernet payload in ChannelData or a Send indication.
	streamMTU = 1600
	// streamBuffer is what one connection holds: any deliverable frame
	// plus read-ahead, so several small frames cost one read. 4096
	// connections (the default cap) hold 16 MiB at most.
	streamBuffer = 4096
	// maxStreamFrame is the longest frame pion's 16-bit arithmetic
	// survives; a length whose frame is longer wraps there.
	maxStreamFrame = 0xFFFF
	// magicCookie marks every STUN message (RFC 5389).
	magicCookie = 0x2112A442
	// idleRefresh: the idle deadline is pushed at most once per
	// idle/idleRefresh, not on every read.
	idleRefresh = 64
)

// frameAction is what to do with the frame at the head of the stream.
type frameAction uint8

const (
	frameIncomplete frameAction = iota // read more first
	frameDeliver                       // hand it to pion
	frameSkip                          // pass over its bytes, keep the connection
	frameReject                        // close the connection
)

// frame is nextFrame's verdict.
type frame struct {
	action frameAction
	total  int    // bytes the frame spans on the stream (0 while unknown)
	stun   bool   // a STUN message (else ChannelData)
	reason string // why it is skipped or rejected: a metric label
}

// nextFrame judges the frame at the start of b. Frames longer than limit
// are skipped whole: pion would drop them anyway. What the two framings
// could disagree on is refused or skipped, so pion's view of the stream
// always matches this one.
func nextFrame(b []byte, limit int) frame {
	if len(b) == 0 {
		return frame{}
	}
	switch b[0] >> 6 {
	case 0: // STUN: 20-byte header, attributes padded to 4
		if len(b) < 4 {
			return frame{}
		}
		length := int(binary.BigEndian.Uint16(b[2:4]))
		total := 20 + length
		switch {
		case length%4 != 0:
			return frame{action: frameReject, reason: "bad_length"}
		case total > maxStreamFrame:
			return frame{action: frameReject, reason: "bad_length"}
		case len(b) < 8:
			return frame{total: total, stun: true}
		case binary.BigEndian.Uint32(b[4:8]) != magicCookie:
			// pion would call the stream invalid and close it.
			return frame{action: frameReject, reason: "bad_frame"}
		case total > limit:
			return frame{action: frameSkip, total: total, stun: true, reason: "oversize"}
		case len(b) < total:
			return frame{total: total, stun: true}
		}
		return frame{action: frameDeliver, total: total, stun: true}
	case 1: // ChannelData, channels 0x4000-0x7FFF (pion's range), padded to 4 on streams
		if len(b) < 4 {
			return frame{}
		}
		length := int(binary.BigEndian.Uint16(b[2:4]))
		total := 4 + (length+3)&^3
		switch {
		case total > maxStreamFrame:
			return frame{action: frameReject, reason: "bad_length"}
		case total > limit:
			return frame{action: frameSkip, total: total, reason: "oversize"}
		case total >= 8 && len(b) < 8:
			return frame{total: total}
		case total >= 8 && binary.BigEndian.Uint32(b[4:8]) == magicCookie:
			// STUNConn tests for a STUN message first and would read
			// this one as STUN, with another length: the stream would
			// fall out of step. Only a payload that starts with the
			// cookie does this; no real media does.
			return frame{action: frameSkip, total: total, reason: "ambiguous"}
		case len(b) < total:
			return frame{total: total}
		}
		return frame{action: frameDeliver, total: total}
	}
	return frame{action: frameReject, reason: "bad_frame"}
}

// streamConfig is what every framed connection shares.
type streamConfig struct {
	authTimeout time.Duration // until the first authenticated request (TLS handshake included)
	idle        time.Duration // between reads once authenticated
	now         func() time.Time
	// verify reports whether b is a request signed with a configured
	// secret under a valid credential; observe shows pion-bound STUN
	// requests to the key chooser once the connection is authenticated.
	verify  func(b []byte, src net.Addr) bool
	observe func(b []byte, src net.Addr)
	metrics *streamMetrics
	log     *slog.Logger
}

// streamListener frames every accepted TCP connection, after TLS when
// tlsConfig is set, and enforces the connection caps.
type streamListener struct {
	net.Listener // the raw TCP listener
	cfg          *streamConfig
	guard        *connlimit.Guard
	tlsConfig    *tls.Config

	mu     sync.Mutex
	live   map[*streamConn]struct{}
	closed bool
}

func newStreamListener(ln net.Listener, cfg *streamConfig, guard *connlimit.Guard, tlsConfig *tls.Config) *streamListener {
	return &streamListener{Listener: ln, cfg: cfg, guard: guard, tlsConfig: tlsConfig, live: map[*streamConn]struct{}{}}
}

// Accept returns the next connection within the caps. Connections over
// a cap are accepted and reset at once, so they never sit in the
// kernel's backlog crowding out others, and never reach pion.
func (l *streamListener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			// pion stops serving a listener at the first error Accept
			// returns; running out of descriptors, or a client that
			// resets before it is accepted, must not end the listener.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.cfg.log.Warn("TURN stream accept failed; retrying", "err", err, "retry_in", backoff.String())
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		key, refused := l.guard.Admit(raw.RemoteAddr())
		if refused != "" {
			if tc, ok := raw.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // a reset: no TIME_WAIT kept for a flood
			}
			_ = raw.Close()
			l.cfg.metrics.closed.WithLabelValues(refused).Inc()
			continue
		}
		// One deadline from accept covers the TLS handshake and every
		// read and write until a request authenticates.
		_ = raw.SetDeadline(l.cfg.now().Add(l.cfg.authTimeout))
		c := &streamConn{Conn: raw, raw: raw, l: l, key: key}
		if l.tlsConfig != nil {
			c.Conn = tls.Server(raw, l.tlsConfig)
		}
		l.mu.Lock()
		closed := l.closed
		if !closed {
			l.live[c] = struct{}{}
		}
		l.mu.Unlock()
		if closed {
			c.setReason("shutdown")
			_ = c.Close()
			return nil, net.ErrClosed
		}
		return c, nil
	}
}

// Close stops accepting and ends every connection this listener framed:
// pion's own Close leaves stream connections running.
func (l *streamListener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	l.closed = true
	live := l.live
	l.live = map[*streamConn]struct{}{}
	l.mu.Unlock()
	for c := range live {
		c.setReason("shutdown")
		_ = c.Close()
	}
	if err != nil {
		return fmt.Errorf("closing TURN stream listener: %w", err)
	}
	return nil
}

func (l *streamListener) forget(c *streamConn) {
	l.mu.Lock()
	delete(l.live, c)
	l.mu.Unlock()
}

// streamConn hands pion one whole frame per Read. Read is called from one
// goroutine (pion's read loop for the connection); Close from any.
type streamConn struct {
	net.Conn          // what is read and written: raw, or TLS over it
	raw      net.Conn // the TCP connection
	l        *streamListener
	key      connlimit.Key

	buf      []byte      // streamBuffer bytes once reading starts
	r, w     int         // unread bytes are buf[r:w]
	skip     int         // bytes of a skipped frame still to pass over
	pending  error       // a read error that came with data, returned next
	authed   atomic.Bool // read by Close's log line from any goroutine
	extended time.Time   // when the idle deadline was last pushed

	reason atomic.Pointer[string] // why it closes: the first reason set wins
	once   sync.Once
}

// errStream is what pion gets when the framer ends a connection.
var errStream = errors.New("turn: stream closed by the framer")

func (c *streamConn) Read(p []byte) (int, error) {
	if c.buf == nil {
		c.buf = make([]byte, streamBuffer)
	}
	limit := min(len(p), streamMTU) - 1 // pion drops a frame that fills its buffer
	for {
		if c.skip > 0 {
			k := min(c.skip, c.w-c.r)
			c.skip -= k
			c.r += k
			if c.skip > 0 {
				if err := c.fill(); err != nil {
					return 0, err
				}
			}
			continue
		}
		f := nextFrame(c.buf[c.r:c.w], limit)
		switch f.action {
		case frameDeliver:
			n := copy(p, c.buf[c.r:c.r+f.total])
			c.r += f.total
			if f.stun {
				c.sawSTUN(p[:n])
			}
			return n, nil
		case frameSkip:
			c.l.cfg.metrics.dropped.WithLabelValues(f.reason).Inc()
			c.skip = f.total
		case frameReject:
			c.setReason(f.reason)
			_ = c.Close()
			return 0, fmt.Errorf("%w: %s", errStream, f.reason)
		default:
			if err := c.fill(); err != nil {
				return 0, err
			}
		}
	}
}

// fill reads more of the stream into the buffer.
func (c *streamConn) fill() error {
	if c.pending != nil {
		return c.failed(c.pending)
	}
	if c.r == c.w {
		c.r, c.w = 0, 0
	} else if c.r > 0 {
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
	}
	if c.authed.Load() {
		if now := c.l.cfg.now(); now.Sub(c.extended) >= c.l.cfg.idle/idleRefresh {
			// A client refreshes its allocation well within idle, so a
			// connection silent that long is dead or hostile.
			_ = c.Conn.SetReadDeadline(now.Add(c.l.cfg.idle))
			c.extended = now
		}
	}
	for range 100 {
		n, err := c.Conn.Read(c.buf[c.w:])
		c.w += n
		if n > 0 {
			c.pending = err
			return nil
		}
		if err != nil {
			return c.failed(err)
		}
	}
	return c.failed(io.ErrNoProgress)
}

// failed names why a read ended the connection and passes the error on.
func (c *streamConn) failed(err error) error {
	tc, isTLS := c.Conn.(*tls.Conn)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) && c.authed.Load():
		c.setReason("idle")
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.setReason("auth_timeout")
	case isTLS && !tc.ConnectionState().HandshakeComplete:
		c.setReason("tls_handshake")
	default:
		c.setReason("ended")
	}
	return fmt.Errorf("turn stream read: %w", err)
}

// sawSTUN shows a STUN frame on its way to pion to the key chooser, and
// lifts the short deadline at the first authenticated request.
func (c *streamConn) sawSTUN(b []byte) {
	cfg := c.l.cfg
	if c.authed.Load() {
		cfg.observe(b, c.raw.RemoteAddr())
		return
	}
	if !cfg.verify(b, c.raw.RemoteAddr()) {
		return
	}
	c.authed.Store(true)
	now := cfg.now()
	c.extended = now
	_ = c.Conn.SetWriteDeadline(time.Time{})
	_ = c.Conn.SetReadDeadline(now.Add(cfg.idle))
}

func (c *streamConn) setReason(r string) { c.reason.CompareAndSwap(nil, &r) }

// Close closes the TCP connection itself: a TLS close_notify could block
// on a client that does not read, and no TURN client needs one.
func (c *streamConn) Close() error {
	err := c.raw.Close()
	c.once.Do(func() {
		c.l.forget(c)
		c.l.guard.Release(c.key)
		reason := "ended"
		if r := c.reason.Load(); r != nil {
			reason = *r
		}
		c.l.cfg.metrics.closed.WithLabelValues(reason).Inc()
		c.l.cfg.log.Debug("TURN stream connection closed", "reason", reason, "authenticated", c.authed.Load())
	})
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("closing TURN stream: %w", err)
	}
	return nil
}

// setupStreams prepares what the TCP and TLS listeners share.
func (s *Server) setupStreams() error {
	t := s.opt.TURN
	auth := t.TCPAuthTimeout
	if auth <= 0 {
		auth = defaultTCPAuthTimeout
	}
	s.guard = connlimit.New(s.opt.Keys, t.TCPConnectionsPerIP, t.MaxTCPConnections)
	m, err := newStreamMetrics(s.opt.Registerer, s.guard)
	if err != nil {
		return err
	}
	s.streams = &streamConfig{
		authTimeout: auth, idle: idleTCP, now: s.opt.Now,
		verify: s.streamAuthenticated, observe: s.keys.observe,
		metrics: m, log: s.log,
	}
	return nil
}

// defaultTCPAuthTimeout applies when Options carry no turn.tcp_auth_timeout.
const defaultTCPAuthTimeout = 10 * time.Second

// streamAuthenticated reports whether b is a request pion will accept the
// credential of: signed with a configured secret, under a username that
// is well formed, unexpired, not revoked and not banned. Only that lifts a
// connection's short deadline.
func (s *Server) streamAuthenticated(b []byte, src net.Addr) bool {
	user, ok := s.keys.verify(b, src)
	if !ok {
		return false
	}
	u, err := s.creds.Check(user)
	return err == nil && !s.revoked.revoked(u.Room) && !s.opt.Gate.Refused(u.Session, src)
}
