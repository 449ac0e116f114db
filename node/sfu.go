package node

import (
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/internal/addrkey"
	"github.com/duetchat/duet/sfu"
	"github.com/duetchat/duet/signal"
	"github.com/duetchat/duet/turn"
	"github.com/duetchat/duet/wire"
)

func startSFU(cfg *configs.Config, log *slog.Logger, reg prometheus.Registerer) (*sfu.SFU, error) {
	opt, err := sfuOptions(cfg)
	if err != nil {
		return nil, fmt.Errorf("starting the SFU: %w", err)
	}
	opt.Logger, opt.Registerer = log, reg
	s, err := sfu.New(opt)
	if err != nil {
		return nil, fmt.Errorf("starting the SFU: %w", err)
	}
	udp, tcp := s.Ports()
	log.Info("SFU listening", "udp", udp, "tcp", tcp, "mode", cfg.SFU.Mode)
	return s, nil
}

// sfuOptions are the SFU's addresses and peer policy from the config.
//
// It advertises one address: public_ip, or without one the address the
// TURN relay advertises (the default-route interface's); but a node whose
// sfu.listen_ip names one address advertises that one when public_ip is
// unset, as nothing else reaches its sockets. The default-route address
// is also what it gathers from when public_ip is not local (1:1 NAT).
//
// A client's candidates are judged by the TURN relay's peer policy, built
// from the same turn.allowed_peer_cidrs and turn.denied_peer_cidrs whether
// the relay runs or not.
func sfuOptions(cfg *configs.Config) (sfu.Options, error) {
	peers, err := turn.NewPeerPolicy(cfg.TURN.AllowedPeerCIDRs, cfg.TURN.DeniedPeerCIDRs)
	if err != nil {
		return sfu.Options{}, err
	}
	keys, err := addrkey.New(cfg.Limits.IPv6Prefix)
	if err != nil {
		return sfu.Options{}, fmt.Errorf("limits.ipv6_prefix: %w", err)
	}
	opt := sfu.Options{
		ListenIP: cfg.SFU.ListenIP, UDPPort: cfg.SFU.UDPPort, TCPPort: cfg.SFU.TCPPort,
		PublicIP: cfg.PublicIP, Peers: peers,
		Keys: keys, TCPPerIP: cfg.SFU.TCPConnectionsPerIP, MaxTCP: cfg.SFU.MaxTCPConnections,
	}
	if ip, err := netip.ParseAddr(opt.ListenIP); err == nil && ip.IsUnspecified() {
		opt.ListenIP = ""
	}
	if opt.ListenIP == "" {
		// The default-route address: advertised without public_ip, and
		// the local side of a public_ip that is not local.
		ip, _, err := turn.RelayIP("")
		switch {
		case err == nil:
			opt.LocalIP = ip.String()
		case opt.PublicIP == "":
			return sfu.Options{}, err
		}
		if opt.PublicIP == "" {
			opt.PublicIP = opt.LocalIP
		}
	}
	return opt, nil
}

// sfuServer adapts the SFU to the hub's MediaServer (the hub speaks its
// own candidate type, the SFU pion's).
type sfuServer struct{ s *sfu.SFU }

func (a sfuServer) Open(room string) (signal.MediaRoom, error) {
	r, err := a.s.Open(room)
	if err != nil {
		return nil, err
	}
	return sfuRoom{r}, nil
}

type sfuRoom struct{ r *sfu.Room }

func (a sfuRoom) Start(send func(side int, sig signal.MediaSignal)) error {
	return a.r.Start(func(side int, sig sfu.Signal) {
		out := signal.MediaSignal{SDP: sig.SDP, End: sig.End}
		if c := sig.Candidate; c != nil {
			out.Candidate = &wire.ICECandidate{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment}
		}
		send(side, out)
	})
}

func (a sfuRoom) Answer(side int, sdp string) error { return a.r.Answer(side, sdp) }

func (a sfuRoom) Candidate(side int, c *wire.ICECandidate) error {
	if c == nil {
		return a.r.Candidate(side, nil)
	}
	return a.r.Candidate(side, &webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment})
}

func (a sfuRoom) Close() { a.r.Close() }

// sfuPaths reports the rooms the SFU forwards.
type sfuPaths struct{ s *sfu.SFU }

func (p sfuPaths) RoomMedia(info signal.RoomInfo) (string, Direction, Direction, bool) {
	r, ok := p.s.Room(info.Code)
	if !ok {
		return "", Direction{}, Direction{}, false
	}
	ab, ba := r.Figures()
	conv := func(f sfu.Flow) Direction {
		return Direction{Bytes: f.Bytes, Packets: f.Packets, BitrateBPS: f.BitrateBPS, NACKs: f.NACKs, PLIs: f.PLIs, Loss: f.Loss, RTTMS: f.RTTMS}
	}
	return "sfu", conv(ab), conv(ba), true
}
