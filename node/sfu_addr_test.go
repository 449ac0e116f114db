package node

import (
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"

	"github.com/duetchat/duet/sfu"
	"github.com/duetchat/duet/turn"
)

// sfuOwnCandidates starts the SFU from cfg as the node does, opens a room
// and returns side 0's candidates: in the node's offer and trickled until
// gathering ends.
func sfuOwnCandidates(t *testing.T, cfgPublicIP, listenIP string) []string {
	t.Helper()
	cfg := testConfig(t)
	cfg.PublicIP, cfg.SFU.ListenIP = cfgPublicIP, listenIP
	s, err := startSFU(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	room, err := s.Open("own-candidates")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(room.Close)
	var mu sync.Mutex
	var cands []string
	done := make(chan struct{})
	if err := room.Start(func(side int, sig sfu.Signal) {
		if side != 0 {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case sig.SDP != "":
			for _, l := range strings.Split(sig.SDP, "\r\n") {
				if c, ok := strings.CutPrefix(l, "a=candidate:"); ok {
					cands = append(cands, c)
				}
			}
		case sig.Candidate != nil:
			cands = append(cands, sig.Candidate.Candidate)
		case sig.End:
			close(done)
		}
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the SFU's gathering did not end")
	}
	mu.Lock()
	defer mu.Unlock()
	return cands
}

// TestSFUAdvertisesOneAddress: the SFU's own candidates carry one
// address: public_ip when set, even one that is not an address of this
// host (a 1:1 NAT: the default-route address is gathered and rewritten);
// without it the TURN relay's address; 127.0.0.1 only where that is the
// advertised address (the tests' setting). Never a .local name, never an
// active or simultaneous-open TCP candidate: one UDP, one passive TCP.
func TestSFUAdvertisesOneAddress(t *testing.T) {
	relay, _, err := turn.RelayIP("")
	if err != nil {
		t.Skipf("this host has no address but loopback: %v", err)
	}
	for _, tc := range []struct {
		name, publicIP, listenIP, want string
	}{
		{"public_ip not local, every address bound", "203.0.113.7", "", "203.0.113.7"},
		{"no public_ip: the TURN relay address", "", "", relay.String()},
		{"loopback advertised", "127.0.0.1", "127.0.0.1", "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cands := sfuOwnCandidates(t, tc.publicIP, tc.listenIP)
			var udp, tcp int
			for _, raw := range cands {
				c, err := ice.UnmarshalCandidate(raw)
				if err != nil {
					t.Fatalf("%q: %v", raw, err)
				}
				if c.Address() != tc.want || strings.Contains(raw, ".local") {
					t.Errorf("candidate %q, want the address %s only", raw, tc.want)
				}
				switch {
				case c.NetworkType().IsUDP():
					udp++
				case c.TCPType() == ice.TCPTypePassive:
					tcp++
				default:
					t.Errorf("candidate %q is neither UDP nor passive TCP", raw)
				}
			}
			if udp != 1 || tcp != 1 {
				t.Fatalf("%d UDP and %d TCP candidates, want one each: %q", udp, tcp, cands)
			}
		})
	}
}
