package turn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"time"

	"github.com/pion/logging"
	pturn "github.com/pion/turn/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/internal/addrkey"
	"github.com/duetchat/duet/internal/connlimit"
	"github.com/duetchat/duet/internal/udpbatch"
)

// Options configure a Server.
type Options struct {
	TURN configs.TURN
	// RelayIP is the address put in relay candidates and in the URLs
	// handed to clients (see RelayIP for how it is found).
	RelayIP net.IP
	// Secrets accepted for credentials; the first mints.
	Secrets []string
	// TLS serves turns: on TURN.ListenTLS when set.
	TLS        *tls.Config
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
	// RelayBind is the local address relay sockets bind to; empty means
	// the host of turn.listen_udp when that names one, else 0.0.0.0.
	RelayBind string
	// Sockets is how many SO_REUSEPORT UDP sockets share the UDP port
	// (one read loop each); 0 means one per CPU.
	Sockets int
	// Keys keys client addresses for the per-address quota (IPv6 by
	// prefix); the zero value keys IPv6 by /64.
	Keys addrkey.Keyer
	// Gate refuses credentials of banned sessions and addresses; nil
	// refuses none.
	Gate Gate
	// OnHTTPSPort takes TURN-over-TLS connections from the node's HTTPS
	// listener (HandOff; see handoff.go).
	OnHTTPSPort bool
}

// Server is the running relay.
type Server struct {
	opt     Options
	log     *slog.Logger
	creds   Credentials
	policy  *PeerPolicy
	keys    *keyChooser
	streams *streamConfig
	guard   *connlimit.Guard
	handoff *handoff // nil unless Options.OnHTTPSPort
	acc     *accounting
	fast    *fastPath
	revoked *revocations
	metrics *metrics
	srv     *pturn.Server
	udpPort int
	tcpPort int
	tlsPort int
	// cuts: rooms whose live allocations sampleLoop cuts (Revoke must
	// not block: the hub calls it with its lock held).
	cuts chan string
	stop chan struct{}
	done chan struct{}
}

// maxCuts bounds the revocations waiting for their allocations to be
// cut; past it a room's allocations relay until they lapse (refreshes
// are refused), as they did before allocations were cut.
const maxCuts = 1024

// idleTCP cuts authenticated TCP/TLS connections that send nothing for
// this long; every client refreshes its allocation well within it. Until
// a request authenticates, turn.tcp_auth_timeout applies instead.
const idleTCP = 15 * time.Minute

// New listens on the configured addresses and starts relaying.
func New(opt Options) (*Server, error) {
	if len(opt.Secrets) == 0 || opt.Secrets[0] == "" {
		return nil, errors.New("turn: a secret is required")
	}
	if opt.RelayIP == nil || opt.RelayIP.To4() == nil {
		return nil, fmt.Errorf("turn: relay address %v is not IPv4 (pion/turn v4 relays IPv4 only)", opt.RelayIP)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Registerer == nil {
		opt.Registerer = prometheus.NewRegistry()
	}
	if opt.Sockets <= 0 {
		opt.Sockets = runtime.NumCPU()
	}
	if opt.Gate == nil {
		opt.Gate = openGate{}
	}
	policy, err := NewPeerPolicy(opt.TURN.AllowedPeerCIDRs, opt.TURN.DeniedPeerCIDRs)
	if err != nil {
		return nil, err
	}
	s := &Server{
		opt: opt, log: opt.Logger, policy: policy,
		creds:   Credentials{Secrets: opt.Secrets, TTL: opt.TURN.CredentialTTL, Now: opt.Now},
		keys:    newKeyChooser(opt.Secrets),
		acc:     newAccounting(opt.Now, opt.TURN.MaxAllocationsPerUser, opt.TURN.MaxAllocationsPerIP, opt.TURN.MaxAllocations),
		revoked: newRevocations(opt.Now, opt.TURN.CredentialTTL),
		stop:    make(chan struct{}), done: make(chan struct{}), cuts: make(chan string, maxCuts),
	}
	s.acc.onClose = s.logAllocation
	s.acc.refuse = newOwnAddrs(opt.RelayIP, opt.TURN.RelayPortMin, opt.TURN.RelayPortMax, policy.allowed).refused
	if s.metrics, err = newMetrics(opt.Registerer, s.acc); err != nil {
		return nil, err
	}
	if err := s.setupStreams(); err != nil {
		return nil, err
	}
	if !policy.Allowed(opt.RelayIP) {
		s.log.Warn("the relay address is refused as a peer, so two clients that both relay cannot reach each other; add it to turn.allowed_peer_cidrs if that is wanted",
			"relay_ip", opt.RelayIP.String())
	}
	cfg, err := s.listen()
	if err != nil {
		if s.fast != nil {
			s.fast.close()
		}
		return nil, err
	}
	if err := s.fast.register(opt.Registerer); err != nil {
		closeAll(cfg)
		s.fast.close()
		return nil, err
	}
	srv, err := pturn.NewServer(cfg)
	if err != nil {
		closeAll(cfg)
		s.fast.close()
		return nil, fmt.Errorf("starting TURN server: %w", err)
	}
	s.srv = srv
	go s.sampleLoop()
	s.log.Info("TURN relay listening", "udp", s.udpPort, "tcp", s.tcpPort, "tls", s.tlsPort,
		"relay_ip", opt.RelayIP.String(), "udp_sockets", opt.Sockets, "secrets", len(opt.Secrets))
	return s, nil
}

func (s *Server) listen() (pturn.ServerConfig, error) {
	t := s.opt.TURN
	bind := s.opt.RelayBind
	if bind == "" {
		bind = "0.0.0.0"
		if host, _, err := net.SplitHostPort(t.ListenUDP); err == nil && net.ParseIP(host) != nil {
			bind = host
		}
	}
	gen := &relayGen{
		inner: &pturn.RelayAddressGeneratorPortRange{
			RelayAddress: s.opt.RelayIP,
			Address:      bind,
			MinPort:      uint16(t.RelayPortMin), //nolint:gosec // validated as a port
			MaxPort:      uint16(t.RelayPortMax), //nolint:gosec // validated as a port
			MaxRetries:   40,
		},
		acc: s.acc,
	}
	cfg := pturn.ServerConfig{
		InboundMTU:    streamMTU, // the stream framer's frame limit rests on it
		Realm:         t.Realm,
		AuthHandler:   s.auth,
		QuotaHandler:  s.quota,
		LoggerFactory: pionLogs{},
		EventHandler: pturn.EventHandler{
			OnAuth:              s.onAuth,
			OnAllocationCreated: s.onCreated,
		},
	}
	var listeners []net.PacketConn
	if t.ListenUDP != "" {
		conns, err := listenUDPReuse(t.ListenUDP, s.opt.Sockets)
		if err != nil {
			return cfg, fmt.Errorf("turn.listen_udp %s: %w", t.ListenUDP, err)
		}
		s.udpPort = conns[0].LocalAddr().(*net.UDPAddr).Port
		var outs []*udpbatch.Conn
		for _, c := range conns {
			b := batched(c)
			if u, ok := b.(*udpbatch.Conn); ok {
				outs = append(outs, u)
			}
			listeners = append(listeners, b)
		}
		s.fast = newFastPath(s.policy, outs, len(outs))
	} else {
		s.fast = newFastPath(s.policy, nil, 0)
	}
	cfg.EventHandler.OnPermissionCreated = func(_, _ net.Addr, _, _, _ string, relay net.Addr, peer net.IP) {
		s.acc.permission(relay, peer, true)
	}
	cfg.EventHandler.OnPermissionDeleted = func(_, _ net.Addr, _, _, _ string, relay net.Addr, peer net.IP) {
		s.acc.permission(relay, peer, false)
	}
	cfg.EventHandler.OnChannelCreated = s.fast.channelCreated
	cfg.EventHandler.OnChannelDeleted = s.fast.channelDeleted
	for _, b := range listeners {
		cfg.PacketConnConfigs = append(cfg.PacketConnConfigs, pturn.PacketConnConfig{
			PacketConn:            &observedPacketConn{PacketConn: b, keys: s.keys, fast: s.fast, send: newRawSender()},
			RelayAddressGenerator: gen,
			PermissionHandler:     s.permit,
		})
	}
	addListener := func(key, addr string, tlsConfig *tls.Config, port *int) error {
		ln, err := net.Listen("tcp4", addr)
		if err != nil {
			closeAll(cfg)
			return fmt.Errorf("%s %s: %w", key, addr, err)
		}
		*port = ln.Addr().(*net.TCPAddr).Port
		cfg.ListenerConfigs = append(cfg.ListenerConfigs, pturn.ListenerConfig{
			Listener:              newStreamListener(ln, s.streams, s.guard, tlsConfig),
			RelayAddressGenerator: gen,
			PermissionHandler:     s.permit,
		})
		return nil
	}
	if t.ListenTCP != "" {
		if err := addListener("turn.listen_tcp", t.ListenTCP, nil, &s.tcpPort); err != nil {
			return cfg, err
		}
	}
	if t.ListenTLS != "" {
		if s.opt.TLS == nil {
			closeAll(cfg)
			return cfg, errors.New("turn.listen_tls is set but no certificate was loaded")
		}
		// The stream listener runs TLS itself (tls.Server per
		// connection): the caps apply before a handshake is spent, and
		// the handshake runs under the short deadline.
		if err := addListener("turn.listen_tls", t.ListenTLS, s.opt.TLS, &s.tlsPort); err != nil {
			return cfg, err
		}
	}
	if s.opt.OnHTTPSPort {
		s.addHandoff(&cfg, gen)
	}
	return cfg, nil
}

func closeAll(cfg pturn.ServerConfig) {
	for _, p := range cfg.PacketConnConfigs {
		_ = p.PacketConn.Close()
	}
	for _, l := range cfg.ListenerConfigs {
		_ = l.Listener.Close()
	}
}

// Close stops the relay and ends every allocation.
func (s *Server) Close() error {
	select {
	case <-s.stop:
		return nil
	default:
	}
	close(s.stop)
	<-s.done
	err := s.srv.Close()
	s.fast.close() // after pion has closed every allocation
	if err != nil {
		return fmt.Errorf("closing TURN server: %w", err)
	}
	return nil
}

// Ports are the bound listener ports (0 when off), for URLs and tests.
func (s *Server) Ports() (udp, tcp, tls int) { return s.udpPort, s.tcpPort, s.tlsPort }

func (s *Server) sampleLoop() {
	defer close(s.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for i := 1; ; i++ {
		select {
		case <-s.stop:
			return
		case room := <-s.cuts:
			if n := s.acc.cutRoom(room); n > 0 {
				s.log.Debug("TURN allocations of an ended room cut", "room", room, "allocations", n)
			}
		case <-t.C:
			s.acc.tick()
			if i%60 == 0 {
				s.revoked.prune()
			}
		}
	}
}

func (s *Server) auth(username, realm string, src net.Addr) ([]byte, bool) {
	u, err := s.creds.Check(username)
	reason := ""
	switch {
	case errors.Is(err, ErrExpired):
		reason = "expired"
	case err != nil:
		reason = "malformed"
	case s.revoked.revoked(u.Room):
		// Its room has ended: allocations and refreshes stop here, so a
		// credential only has to outlast a call, not its TTL.
		reason = "revoked"
	case s.opt.Gate.Refused(u.Session, src):
		reason = "banned"
	}
	if reason != "" {
		s.metrics.authFailures.WithLabelValues(reason).Inc()
		s.log.Debug("TURN credential refused", "reason", reason, "room", u.Room, "session", u.Session)
		return nil, false
	}
	return pturn.GenerateAuthKey(username, realm, Password(s.keys.secret(username, src), username)), true
}

func (s *Server) onAuth(_, _ net.Addr, _, _, _, _ string, verdict bool) {
	if !verdict {
		s.metrics.authFailures.WithLabelValues("bad_password").Inc()
	}
}

func (s *Server) quota(username, _ string, src net.Addr) bool {
	u, err := ParseUsername(username)
	if err != nil {
		return false
	}
	ok, scope := s.acc.admit(u, s.addrKey(src))
	if !ok {
		s.metrics.quotaRefusals.WithLabelValues(scope).Inc()
		s.log.Info("TURN allocation over quota", "scope", scope, "room", u.Room, "session", u.Session)
	}
	return ok
}

func (s *Server) permit(_ net.Addr, peer net.IP) bool {
	if s.policy.Allowed(peer) {
		return true
	}
	s.metrics.deniedPeers.Inc()
	return false
}

func (s *Server) onCreated(src, dst net.Addr, _, username, _ string, relay net.Addr, _ int) {
	u, _ := ParseUsername(username) // already checked by auth
	transport := s.transportOf(dst)
	c := s.acc.created(relay, u, s.addrKey(src), transport)
	if transport == "udp" {
		s.fast.add(c, src)
	}
	s.metrics.allocationsTotal.Inc()
}

// addrKey is what the per-address quota counts src under.
func (s *Server) addrKey(src net.Addr) string {
	ap, err := netip.ParseAddrPort(src.String())
	if err != nil {
		return src.String()
	}
	p := s.opt.Keys.Prefix(ap.Addr())
	return p.String()
}

// Revoke refuses every credential minted for room from now on (new
// allocations and refreshes): the room has ended. Its live allocations
// stop relaying too, shortly after, on the relay's own goroutine: a
// stranger who was told the room ended (or was banned out of it) keeps
// no path to the other's address through this node. They lapse at their
// lifetime, since they cannot be refreshed.
func (s *Server) Revoke(room string) {
	s.revoked.revoke(room)
	select {
	case s.cuts <- room:
	default:
		s.log.Debug("too many ended rooms to cut at once; their allocations relay until they lapse", "room", room)
	}
}

func (s *Server) transportOf(dst net.Addr) string {
	a, ok := dst.(*net.TCPAddr)
	switch {
	case !ok:
		return "udp"
	case s.tlsPort != 0 && a.Port == s.tlsPort, a.Port == s.handoffPort():
		return "tls"
	default:
		return "tcp"
	}
}

// logAllocation writes the one line an ended allocation gets. It names
// room and session, never an IP address.
func (s *Server) logAllocation(a *alloc, to, from Totals) {
	s.log.Info("TURN allocation ended",
		"room", a.user.Room, "session", a.user.Session, "user", userLabel(a.user),
		"transport", a.transport, "duration", s.opt.Now().Sub(a.created).Round(time.Millisecond).String(),
		"to_peer_bytes", to.Bytes, "to_peer_packets", to.Packets,
		"from_peer_bytes", from.Bytes, "from_peer_packets", from.Packets)
}

func userLabel(u Username) string {
	if u.Session != "" {
		return ""
	}
	return u.User
}

// relayGen allocates relay sockets in the configured range and counts
// what each one relays.
type relayGen struct {
	inner *pturn.RelayAddressGeneratorPortRange
	acc   *accounting
}

func (g *relayGen) Validate() error {
	if err := g.inner.Validate(); err != nil {
		return fmt.Errorf("relay ports: %w", err)
	}
	return nil
}

func (g *relayGen) AllocatePacketConn(network string, port int) (net.PacketConn, net.Addr, error) {
	pc, addr, err := g.inner.AllocatePacketConn(network, port)
	if err != nil {
		return nil, nil, err
	}
	setBuffers(pc, relayBuffer)
	return g.acc.wrap(pc, addr), addr, nil
}

// Socket buffers: a burst from many clients arrives while a read loop is
// busy; the kernel default (about 200 KB) drops it. The kernel caps these
// at net.core.rmem_max/wmem_max, so they are a request, not a promise.
const (
	listenerBuffer = 4 << 20
	relayBuffer    = 512 << 10
)

// batched puts a listener socket on udpbatch: every allocation's
// traffic to its client (ChannelData, Data indications) leaves in one
// sendmmsg per batch, and pion's read loop takes every waiting datagram
// in one recvmmsg. Relay sockets stay one system call per datagram: each
// carries one allocation's flow (a call's packets, a few hundred a
// second), so a 500µs batch would hold at most one datagram, and a
// batching socket per allocation would add a goroutine each.
func batched(pc net.PacketConn) net.PacketConn {
	u, ok := pc.(*net.UDPConn)
	if !ok {
		return pc
	}
	// Slots above streamMTU: a datagram too big for pion's read buffer
	// still reads as too big (and is dropped there), not as a truncated
	// one that fits.
	return udpbatch.New(u, udpbatch.Options{MTU: 2048})
}

func setBuffers(pc net.PacketConn, size int) {
	if u, ok := pc.(*net.UDPConn); ok {
		_ = u.SetReadBuffer(size)
		_ = u.SetWriteBuffer(size)
	}
}

func (g *relayGen) AllocateConn(network string, port int) (net.Conn, net.Addr, error) {
	return g.inner.AllocateConn(network, port)
}

// URLs are the STUN and TURN URLs clients use to reach this relay.
func (s *Server) URLs() (stun []string, turn []string) {
	host := s.opt.RelayIP.String()
	if s.udpPort != 0 {
		hp := net.JoinHostPort(host, strconv.Itoa(s.udpPort))
		stun = append(stun, "stun:"+hp)
		turn = append(turn, "turn:"+hp+"?transport=udp")
	}
	if s.tcpPort != 0 {
		turn = append(turn, "turn:"+net.JoinHostPort(host, strconv.Itoa(s.tcpPort))+"?transport=tcp")
	}
	if s.tlsPort != 0 {
		turn = append(turn, "turns:"+net.JoinHostPort(host, strconv.Itoa(s.tlsPort))+"?transport=tcp")
	}
	if u := s.handoffURL(); u != "" {
		turn = append(turn, u)
	}
	return stun, turn
}

// ICEServer is one RTCIceServer entry.
type ICEServer struct {
	URLs       []string
	Username   string
	Credential string
}

// ICEServers mints a credential for one stranger of one room and returns
// the node's STUN and TURN entries.
func (s *Server) ICEServers(room, session string) ([]ICEServer, error) {
	stun, turn := s.URLs()
	var out []ICEServer
	if len(stun) > 0 {
		out = append(out, ICEServer{URLs: stun})
	}
	if len(turn) > 0 {
		c, err := s.creds.Mint(room, session)
		if err != nil {
			return nil, err
		}
		out = append(out, ICEServer{URLs: turn, Username: c.Username, Credential: c.Password})
	}
	return out, nil
}

// pionLogs silences pion's own logging: its messages carry client
// addresses, and duet keeps raw IPs out of its logs. What an operator
// needs (auth failures, refused peers, quotas) is in metrics and in
// duet's own lines.
type pionLogs struct{}

func (pionLogs) NewLogger(string) logging.LeveledLogger { return quiet{} }

type quiet struct{}

func (quiet) Trace(string)          {}
func (quiet) Tracef(string, ...any) {}
func (quiet) Debug(string)          {}
func (quiet) Debugf(string, ...any) {}
func (quiet) Info(string)           {}
func (quiet) Infof(string, ...any)  {}
func (quiet) Warn(string)           {}
func (quiet) Warnf(string, ...any)  {}
func (quiet) Error(string)          {}
func (quiet) Errorf(string, ...any) {}
