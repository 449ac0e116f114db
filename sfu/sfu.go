// Package sfu is duet's last-resort media path: when two strangers cannot
// connect peer to peer or through TURN, each connects to the node and the
// node forwards RTP between them. It never decodes or records media.
//
// One API serves every room: a single UDP port (ICE UDP mux) and a single
// TCP port (ICE-TCP passive) carry all PeerConnections. The node makes
// every offer: one sendrecv audio and one sendrecv video transceiver per
// stranger, with the outgoing tracks created up front, so nothing needs
// renegotiating when the other stranger's media arrives.
package sfu

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure an SFU.
type Options struct {
	// ListenIP is where the two ports bind ("" = every address).
	ListenIP string
	// UDPPort and TCPPort carry all ICE traffic; 0 picks a free port
	// (tests).
	UDPPort, TCPPort int
	// PublicIP, if set, is the address put in candidates instead of the
	// interface addresses (a node behind 1:1 NAT).
	PublicIP string
	Logger   *slog.Logger
	// Registerer receives the SFU metrics; nil means none.
	Registerer prometheus.Registerer
	// Now is the clock for rates and the PLI limiter; default time.Now.
	Now func() time.Time
}

// SFU forwards the media of the rooms moved onto it.
type SFU struct {
	api    *webrtc.API
	udp    net.PacketConn
	tcp    net.Listener
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
	udp, err := net.ListenPacket("udp4", net.JoinHostPort(opt.ListenIP, strconv.Itoa(opt.UDPPort)))
	if err != nil {
		return nil, fmt.Errorf("sfu: udp port: %w", err)
	}
	tcp, err := net.Listen("tcp4", net.JoinHostPort(opt.ListenIP, strconv.Itoa(opt.TCPPort)))
	if err != nil {
		_ = udp.Close()
		return nil, fmt.Errorf("sfu: tcp port: %w", err)
	}
	api, err := newAPI(udp, tcp, opt.PublicIP)
	if err != nil {
		_ = udp.Close()
		_ = tcp.Close()
		return nil, err
	}
	m, err := newMetrics(opt.Registerer)
	if err != nil {
		_ = udp.Close()
		_ = tcp.Close()
		return nil, err
	}
	return &SFU{api: api, udp: udp, tcp: tcp, log: opt.Logger, now: opt.Now, m: m, open: map[string]*Room{}}, nil
}

// quiet silences pion's own logging: its lines carry client addresses.
func quiet() logging.LoggerFactory {
	f := logging.NewDefaultLoggerFactory()
	f.DefaultLogLevel = logging.LogLevelDisabled
	return f
}

func newAPI(udp net.PacketConn, tcp net.Listener, publicIP string) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	// What every browser shares: VP8 and Opus (H.264 profiles differ too
	// much between browsers to forward one stream to any other blindly).
	video := []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: video},
		PayloadType:        96,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, fmt.Errorf("sfu: vp8: %w", err)
	}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"},
		PayloadType:        111,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, fmt.Errorf("sfu: opus: %w", err)
	}
	reg := &interceptor.Registry{}
	// Sender reports from pion; NACKs both ways and receiver reports from
	// our own allocation-free feedback (feedback.go).
	sr, err := report.NewSenderInterceptor()
	if err != nil {
		return nil, fmt.Errorf("sfu: sender reports: %w", err)
	}
	reg.Add(sr)
	reg.Add(feedbackFactory{now: time.Now})
	se := webrtc.SettingEngine{LoggerFactory: quiet()}
	se.SetICEUDPMux(webrtc.NewICEUDPMux(quiet().NewLogger("ice"), udp))
	se.SetICETCPMux(webrtc.NewICETCPMux(quiet().NewLogger("ice"), tcp, 32))
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4})
	se.SetIncludeLoopbackCandidate(true)
	if publicIP != "" {
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External: []string{publicIP}, AsCandidateType: webrtc.ICECandidateTypeHost,
		}); err != nil {
			return nil, fmt.Errorf("sfu: public_ip %s: %w", publicIP, err)
		}
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se)), nil
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
	return errors.Join(s.udp.Close(), s.tcp.Close())
}

// Room returns the live room with code, if the SFU carries it.
func (s *SFU) Room(code string) (*Room, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.open[code]
	return r, ok
}
