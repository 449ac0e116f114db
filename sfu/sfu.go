// Package sfu is duet's last-resort media path: when two strangers cannot
// connect peer to peer or through TURN, each connects to the node and the
// node forwards RTP between them. It never decodes or records media.
//
// One API serves every room: a single UDP port (ICE UDP mux) and a single
// TCP port (ICE-TCP passive) carry all PeerConnections. The node makes
// every offer: one sendrecv audio and one sendrecv video transceiver per
// stranger, with the outgoing tracks created up front, so nothing needs
// renegotiating when the other stranger's media arrives.
//
// The SFU never starts traffic to an address a client names. It runs
// ICE-lite (as mediasoup does): it answers connectivity checks and never
// starts one, the browser being the controlling agent, and it only ever
// answers the address a check came from; it has no active ICE-TCP and no
// mDNS. The candidates a client names are filtered all the
// same (candidates.go), and the SFU's own candidates carry one address
// only (addr.go).
package sfu

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetchat/duet/internal/addrkey"
	"github.com/duetchat/duet/internal/connlimit"
)

// Options configure an SFU.
type Options struct {
	// ListenIP is where the two ports bind ("" = every address).
	ListenIP string
	// UDPPort and TCPPort carry all ICE traffic; 0 picks a free port
	// (tests).
	UDPPort, TCPPort int
	// PublicIP is the one address the SFU's candidates carry. Empty means
	// ListenIP, which must then name one address.
	PublicIP string
	// LocalIP is the interface address that traffic for PublicIP arrives
	// on when PublicIP is no address of this host (1:1 NAT, a cloud VM):
	// the node passes the default-route address. Unused otherwise.
	LocalIP string
	// Peers decides which addresses a client's candidates may name; nil
	// allows public (global unicast, non-private) addresses only. The
	// node's own addresses are refused whatever it says.
	Peers  PeerFilter
	Logger *slog.Logger
	// Registerer receives the SFU metrics; nil means none.
	Registerer prometheus.Registerer
	// Now is the clock for rates and the PLI limiter; default time.Now.
	Now func() time.Time

	// Keys keys client addresses for the ICE-TCP caps (IPv6 by prefix);
	// the zero value keys IPv6 by /64. TCPPerIP and MaxTCP cap the
	// ICE-TCP port's connections per address and in total (0 = no cap).
	Keys             addrkey.Keyer
	TCPPerIP, MaxTCP int

	// For the tests that prove each guard alone: a full ICE agent instead
	// of ICE-lite, and every remote candidate passed to pion unfiltered.
	fullICE, noFilter bool
	// firstBind replaces firstBindTimeout (tests).
	firstBind time.Duration
}

// SFU forwards the media of the rooms moved onto it.
type SFU struct {
	apis   apiMaker
	udp    net.PacketConn
	cuts   *shortcuts
	tcp    net.Listener
	plan   addrPlan
	filter *candidateFilter // nil: none (tests only)
	log    *slog.Logger
	now    func() time.Time
	m      *metrics
	mu     sync.Mutex
	open   map[string]*Room
	closed bool
}

// New binds the ports and builds the API.
func New(opt Options) (*SFU, error) {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Peers == nil {
		opt.Peers = publicOnly{}
	}
	host, err := hostAddrs()
	if err != nil {
		return nil, err
	}
	plan, err := planAddrs(opt, host)
	if err != nil {
		return nil, err
	}
	udp, err := listenUDP(opt.ListenIP, opt.UDPPort)
	if err != nil {
		return nil, err
	}
	tcp, err := net.Listen("tcp4", net.JoinHostPort(opt.ListenIP, strconv.Itoa(opt.TCPPort)))
	if err != nil {
		_ = udp.Close()
		return nil, fmt.Errorf("sfu: tcp port: %w", err)
	}
	m, err := newMetrics(opt.Registerer)
	if err != nil {
		_ = udp.Close()
		_ = tcp.Close()
		return nil, err
	}
	if opt.firstBind <= 0 {
		opt.firstBind = firstBindTimeout
	}
	guarded := &guardedListener{Listener: tcp, guard: connlimit.New(opt.Keys, opt.TCPPerIP, opt.MaxTCP),
		refused: func(reason string) { m.tcpRefused.WithLabelValues(reason).Inc() }}
	// a forwarding worker per CPU for the shortcut (cutworker.go)
	cuts := newShortcuts(runtime.GOMAXPROCS(0), m.shortcut, m.shortcutDropped, m.shortcutQueueFull)
	apis, err := newAPIs(&shortcutConn{Conn: udp, table: cuts}, guarded, plan, !opt.fullICE, opt.firstBind)
	if err != nil {
		cuts.stop()
		_ = udp.Close()
		_ = tcp.Close()
		return nil, err
	}
	s := &SFU{apis: apis, udp: udp, cuts: cuts, tcp: tcp, plan: plan, log: opt.Logger, now: opt.Now, m: m, open: map[string]*Room{}}
	if !opt.noFilter {
		s.filter = &candidateFilter{peers: opt.Peers, own: plan.own}
	}
	u, t := s.Ports()
	s.log.Info("SFU addresses", "binds_udp", netip.AddrPortFrom(plan.bind, uint16(u)).String(),
		"binds_tcp", netip.AddrPortFrom(plan.bind, uint16(t)).String(), "gathers", plan.gather.String(),
		"advertises", plan.advertise.String(), "rewritten", plan.gather != plan.advertise, "ice_lite", !opt.fullICE)
	return s, nil
}

// quiet silences pion's own logging: its lines carry client addresses.
func quiet() logging.LoggerFactory {
	f := logging.NewDefaultLoggerFactory()
	f.DefaultLogLevel = logging.LogLevelDisabled
	return f
}

// apiMaker builds each leg's API: the settings and codecs every leg
// shares, with the leg's own buffers for what pion decrypts (direct.go)
// and its own feedback interceptor, which the direct path feeds.
type apiMaker struct {
	se    webrtc.SettingEngine
	media *webrtc.MediaEngine
}

func (a apiMaker) build(l *leg) *webrtc.API {
	reg := &interceptor.Registry{}
	// NACKs both ways, receiver and sender reports: our own
	// allocation-free feedback (feedback.go).
	reg.Add(feedbackFactory{now: time.Now, made: l.setFeedback})
	se := a.se
	se.BufferFactory = l.buffer
	// what the shortcut's SRTP keys come from (keys.go)
	se.SetDTLSKeyLogWriter(&l.keys)
	se.SetDTLSServerHelloMessageHook(l.keys.serverHello)
	return webrtc.NewAPI(webrtc.WithMediaEngine(a.media), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se))
}

func newAPIs(udp net.PacketConn, tcp net.Listener, plan addrPlan, lite bool, firstBind time.Duration) (apiMaker, error) {
	m := &webrtc.MediaEngine{}
	// What every browser shares: VP8 and Opus (H.264 profiles differ too
	// much between browsers to forward one stream to any other blindly).
	video := []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: video},
		PayloadType:        96,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		return apiMaker{}, fmt.Errorf("sfu: vp8: %w", err)
	}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"},
		PayloadType:        111,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		return apiMaker{}, fmt.Errorf("sfu: opus: %w", err)
	}
	se := webrtc.SettingEngine{LoggerFactory: quiet()}
	// ICE-lite: pion's lite agent only answers checks (its selector never
	// pings, and it is the controlled side: a full remote that sees
	// a=ice-lite in our offer takes the controlling role).
	se.SetLite(lite)
	// No mDNS: no .local candidates of ours, no multicast queries for a
	// client's.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// Passive ICE-TCP only: the node never dials out.
	se.DisableActiveTCP(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4})
	// Gather from exactly one local address (addr.go): the UDP mux lists
	// only it, the TCP side keeps only it, and loopback only when it is
	// that address.
	udpAddr := udp.LocalAddr().(*net.UDPAddr)
	if plan.bind.IsUnspecified() {
		udpAddr = &net.UDPAddr{IP: plan.gather.AsSlice(), Port: udpAddr.Port}
	}
	se.SetICEUDPMux(oneAddrUDPMux{UDPMux: webrtc.NewICEUDPMux(quiet().NewLogger("ice"), udp), addr: udpAddr})
	se.SetICETCPMux(ice.NewTCPMuxDefault(ice.TCPMuxParams{
		Listener: tcp, Logger: quiet().NewLogger("ice"), ReadBufferSize: 32,
		WriteBufferSize:      4 << 20, // what pion's own constructor asks for
		FirstStunBindTimeout: firstBind, AliveDurationForConnFromStun: firstBind,
	}))
	gather := plan.gather
	se.SetIPFilter(func(ip net.IP) bool {
		a, ok := netip.AddrFromSlice(ip)
		return ok && a.Unmap() == gather
	})
	se.SetIncludeLoopbackCandidate(plan.loopback)
	if plan.gather != plan.advertise {
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External: []string{plan.advertise.String()}, Local: plan.gather.String(),
			AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace,
		}); err != nil {
			return apiMaker{}, fmt.Errorf("sfu: advertising %s for %s: %w", plan.advertise, plan.gather, err)
		}
	}
	return apiMaker{se: se, media: m}, nil
}

// Ports are the bound UDP and TCP ports.
func (s *SFU) Ports() (udp, tcp int) {
	return s.udp.LocalAddr().(*net.UDPAddr).Port, s.tcp.Addr().(*net.TCPAddr).Port
}

// Close ends every room and releases the ports.
func (s *SFU) Close() error {
	s.mu.Lock()
	s.closed = true
	rooms := make([]*Room, 0, len(s.open))
	for _, r := range s.open {
		rooms = append(rooms, r)
	}
	s.mu.Unlock()
	for _, r := range rooms {
		r.Close()
	}
	err := errors.Join(s.udp.Close(), s.tcp.Close())
	s.cuts.stop()
	return err
}

// Room returns the live room with code, if the SFU carries it.
func (s *SFU) Room(code string) (*Room, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.open[code]
	return r, ok
}

// advertises reports whether c may go to a client: a candidate on the
// advertised address, UDP or passive TCP.
func (s *SFU) advertises(c *webrtc.ICECandidate) bool {
	a, err := netip.ParseAddr(c.Address)
	if err != nil || a.Unmap() != s.plan.advertise {
		return false
	}
	return c.Protocol == webrtc.ICEProtocolUDP || (c.Protocol == webrtc.ICEProtocolTCP && c.TCPType == ice.TCPTypePassive.String())
}
