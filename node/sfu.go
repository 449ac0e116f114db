package node

import (
	"fmt"
	"log/slog"

	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/sfu"
	"github.com/duetchat/duet/signal"
)

func startSFU(cfg *configs.Config, log *slog.Logger, reg prometheus.Registerer) (*sfu.SFU, error) {
	s, err := sfu.New(sfu.Options{
		ListenIP: cfg.SFU.ListenIP, UDPPort: cfg.SFU.UDPPort, TCPPort: cfg.SFU.TCPPort,
		PublicIP: cfg.PublicIP, Logger: log, Registerer: reg,
	})
	if err != nil {
		return nil, fmt.Errorf("starting the SFU: %w", err)
	}
	udp, tcp := s.Ports()
	log.Info("SFU listening", "udp", udp, "tcp", tcp, "mode", cfg.SFU.Mode)
	return s, nil
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
			out.Candidate = &signal.ICECandidate{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment}
		}
		send(side, out)
	})
}

func (a sfuRoom) Answer(side int, sdp string) error { return a.r.Answer(side, sdp) }

func (a sfuRoom) Candidate(side int, c *signal.ICECandidate) error {
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
