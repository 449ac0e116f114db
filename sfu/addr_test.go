package sfu

import (
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestPlanAddrs(t *testing.T) {
	host := []hostAddr{
		{addr: netip.MustParseAddr("127.0.0.1"), loopback: true},
		{addr: netip.MustParseAddr("10.0.0.5")},
		{addr: netip.MustParseAddr("192.168.7.1")},
		{addr: netip.MustParseAddr("198.51.100.7"), loopback: true}, // a public address on lo
	}
	for _, tc := range []struct {
		name                    string
		opt                     Options
		bind, gather, advertise string
		loopback                bool
		err                     string
	}{
		{name: "public_ip local", opt: Options{PublicIP: "192.168.7.1", LocalIP: "10.0.0.5"}, bind: "0.0.0.0", gather: "192.168.7.1", advertise: "192.168.7.1"},
		{name: "public_ip behind 1:1 NAT", opt: Options{PublicIP: "203.0.113.7", LocalIP: "10.0.0.5"}, bind: "0.0.0.0", gather: "10.0.0.5", advertise: "203.0.113.7"},
		{name: "public_ip on loopback", opt: Options{PublicIP: "198.51.100.7"}, bind: "0.0.0.0", gather: "198.51.100.7", advertise: "198.51.100.7", loopback: true},
		{name: "tests on loopback", opt: Options{ListenIP: "127.0.0.1", PublicIP: "127.0.0.1"}, bind: "127.0.0.1", gather: "127.0.0.1", advertise: "127.0.0.1", loopback: true},
		{name: "listen_ip alone", opt: Options{ListenIP: "10.0.0.5"}, bind: "10.0.0.5", gather: "10.0.0.5", advertise: "10.0.0.5"},
		{name: "listen_ip behind 1:1 NAT", opt: Options{ListenIP: "10.0.0.5", PublicIP: "203.0.113.7"}, bind: "10.0.0.5", gather: "10.0.0.5", advertise: "203.0.113.7"},
		{name: "mapped public_ip", opt: Options{PublicIP: "::ffff:10.0.0.5"}, bind: "0.0.0.0", gather: "10.0.0.5", advertise: "10.0.0.5"},
		{name: "nothing to advertise", opt: Options{}, err: "set public_ip"},
		{name: "not local, no local address", opt: Options{PublicIP: "203.0.113.7"}, err: "not an address of this host"},
		{name: "local address not local", opt: Options{PublicIP: "203.0.113.7", LocalIP: "10.9.9.9"}, err: "not an address of this host"},
		{name: "ipv6 public_ip", opt: Options{PublicIP: "2001:db8::1"}, err: "IPv4 only"},
		{name: "bad public_ip", opt: Options{PublicIP: "example.com"}, err: "not an IP address"},
		{name: "unspecified public_ip", opt: Options{PublicIP: "0.0.0.0", LocalIP: "10.0.0.5"}, err: "cannot be advertised"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := planAddrs(tc.opt, host)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.bind.String() != tc.bind || p.gather.String() != tc.gather || p.advertise.String() != tc.advertise || p.loopback != tc.loopback {
				t.Fatalf("plan = bind %s gather %s advertise %s loopback %v; want %s %s %s %v",
					p.bind, p.gather, p.advertise, p.loopback, tc.bind, tc.gather, tc.advertise, tc.loopback)
			}
			for _, a := range []string{"127.0.0.1", "10.0.0.5", "192.168.7.1", "198.51.100.7", tc.advertise} {
				if _, ok := p.own[netip.MustParseAddr(a)]; !ok {
					t.Errorf("%s is not among the node's own addresses", a)
				}
			}
		})
	}
}

// sfuCandidates opens a room on s and returns the candidates of side 0:
// those in the node's offer, those it trickled, and those in its local
// description once gathering is complete (what pion gathered, before the
// SFU's own check of what it hands out).
func sfuCandidates(t *testing.T, s *SFU) (offered, trickled, gathered []string) {
	t.Helper()
	room, err := s.Open("addrs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(room.Close)
	var mu sync.Mutex
	done := make(chan struct{})
	if err := room.Start(func(side int, sig Signal) {
		if side != 0 {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case sig.SDP != "":
			offered = append(offered, candidatesIn(t, sig.SDP)...)
		case sig.Candidate != nil:
			trickled = append(trickled, sig.Candidate.Candidate)
		case sig.End:
			close(done)
		}
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("gathering did not complete")
	}
	mu.Lock()
	defer mu.Unlock()
	return offered, trickled, candidatesIn(t, room.legs[0].pc.LocalDescription().SDP)
}

// checkAdvertised: every candidate names want, UDP or passive TCP, and
// there is one of each (pion's SDP repeats them for component 2).
func checkAdvertised(t *testing.T, want string, sets ...[]string) {
	t.Helper()
	for i, set := range sets {
		if i > 0 && len(set) == 0 { // the offer precedes gathering: may be empty
			t.Fatalf("no candidates in set %d", i)
		}
		var udp, tcp int
		for _, raw := range set {
			c, err := ice.UnmarshalCandidate(raw)
			if err != nil {
				t.Fatalf("%q: %v", raw, err)
			}
			if c.Address() != want {
				t.Errorf("candidate %q does not carry %s", raw, want)
			}
			if strings.Contains(raw, ".local") || strings.Contains(raw, "tcptype active") || strings.Contains(raw, "tcptype so") {
				t.Errorf("candidate %q", raw)
			}
			switch {
			case c.Component() != 1:
			case c.NetworkType().IsUDP():
				udp++
			case c.TCPType() == ice.TCPTypePassive:
				tcp++
			default:
				t.Errorf("candidate %q is neither UDP nor passive TCP", raw)
			}
		}
		if len(set) > 0 && (udp != 1 || tcp != 1) {
			t.Errorf("set %d has %d UDP and %d TCP candidates, want one each: %v", i, udp, tcp, set)
		}
	}
}

// TestAdvertisesOneAddress: the SFU's candidates, in its offer, trickled
// and gathered, carry the advertised address only: the loopback address
// when that is what it advertises, a documentation address rewritten
// from loopback (a public address mapped onto lo) and nothing else.
func TestAdvertisesOneAddress(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  Options
		want string
	}{
		{"loopback advertised", Options{ListenIP: "127.0.0.1", PublicIP: "127.0.0.1"}, "127.0.0.1"},
		{"public_ip not local", Options{ListenIP: "127.0.0.1", PublicIP: "203.0.113.7"}, "203.0.113.7"},
		{"every address bound, public_ip not local", Options{PublicIP: "203.0.113.8", LocalIP: "127.0.0.1"}, "203.0.113.8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opt.Logger = discard()
			s, err := New(tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			offered, trickled, gathered := sfuCandidates(t, s)
			checkAdvertised(t, tc.want, offered, trickled, gathered)
		})
	}
}
