package turn

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	pturn "github.com/pion/turn/v4"
)

// TURN over TLS on the HTTPS port: the node's HTTPS listener completes
// the TLS handshake, sees a STUN message where HTTP would start, and
// hands the connection here. It then runs through the same framer, caps
// and deadlines as a connection on turn.listen_tls.

// handoff is the listener pion accepts handed-over connections from.
type handoff struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	port  atomic.Int32           // the HTTPS port, for the transport label
	url   atomic.Pointer[string] // turns:host:port?transport=tcp, once known
}

func newHandoff() *handoff {
	return &handoff{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (h *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.done:
		return nil, net.ErrClosed
	}
}

func (h *handoff) Close() error {
	h.once.Do(func() { close(h.done) })
	return nil
}

func (h *handoff) Addr() net.Addr { return handoffAddr{} }

type handoffAddr struct{}

func (handoffAddr) Network() string { return "tcp" }
func (handoffAddr) String() string  { return "https-port" }

// addHandoff registers the hand-over listener with pion (Options.OnHTTPSPort).
func (s *Server) addHandoff(cfg *pturn.ServerConfig, gen pturn.RelayAddressGenerator) {
	s.handoff = newHandoff()
	cfg.ListenerConfigs = append(cfg.ListenerConfigs, pturn.ListenerConfig{
		// No TLS config: the HTTPS listener did the handshake.
		Listener:              newStreamListener(s.handoff, s.streams, s.guard, nil),
		RelayAddressGenerator: gen,
		PermissionHandler:     s.permit,
	})
}

// ServeHTTPSPort tells the relay that TURN over TLS also reaches it on the
// HTTPS listener's port, under host (the certificate's name): ICEServers
// then offers turns:host:port?transport=tcp.
func (s *Server) ServeHTTPSPort(host string, port int) {
	if s.handoff == nil {
		return
	}
	s.handoff.port.Store(int32(port)) //nolint:gosec // a port
	u := "turns:" + net.JoinHostPort(host, strconv.Itoa(port)) + "?transport=tcp"
	s.handoff.url.Store(&u)
}

// ErrNoHandoff: the relay was not started with Options.OnHTTPSPort, or
// has stopped.
var ErrNoHandoff = errors.New("turn: not taking connections from the HTTPS port")

// handoffWait bounds how long HandOff waits for pion's accept loop.
const handoffWait = 5 * time.Second

// HandOff gives the relay c, a TLS connection whose handshake is done and
// whose first bytes are a STUN message; tcp is the connection under it.
// From here the relay owns both: closing closes tcp directly, since a
// TLS close_notify could block on a client that does not read. On error
// c is closed already.
func (s *Server) HandOff(c, tcp net.Conn) error {
	hc := &handedConn{Conn: c, tcp: tcp}
	if s.handoff == nil {
		_ = hc.Close()
		return ErrNoHandoff
	}
	t := time.NewTimer(handoffWait)
	defer t.Stop()
	select {
	case s.handoff.conns <- hc:
		return nil
	case <-s.handoff.done:
		_ = hc.Close()
		return ErrNoHandoff
	case <-t.C:
		_ = hc.Close()
		return fmt.Errorf("turn: hand-over not accepted within %s", handoffWait)
	}
}

// handedConn reads and writes through TLS and closes the TCP connection.
type handedConn struct {
	net.Conn
	tcp net.Conn
}

func (c *handedConn) Close() error { return c.tcp.Close() }

// handoffPort is the HTTPS port once known, else 0.
func (s *Server) handoffPort() int {
	if s.handoff == nil {
		return 0
	}
	return int(s.handoff.port.Load())
}

// handoffURL is the turns: URL on the HTTPS port, or "".
func (s *Server) handoffURL() string {
	if s.handoff == nil {
		return ""
	}
	if u := s.handoff.url.Load(); u != nil {
		return *u
	}
	return ""
}
