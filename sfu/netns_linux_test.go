package sfu

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/duetchat/duet/internal/testtool"
	"github.com/duetchat/duet/turn"
)

// The lab: two network namespaces made by the test, joined by a veth
// pair. "node" holds the SFU's address and the two clients' (TEST-NET-2);
// "trap", its default route, holds the addresses an attacker would aim
// the node at: private 10/8 and 192.168/16 and the link-local cloud
// metadata address. Traps also listen on the node's own loopback and
// public address. Every other address routes to the trap side and dies
// there, so a packet to any address at all is seen by the node's packet
// filter.
const (
	labSFU     = "198.51.100.1"
	labClientU = "198.51.100.2" // the client on UDP
	labClientT = "198.51.100.3" // the client on ICE-TCP
	labRouter  = "198.51.100.254"
	labEnv     = "DUET_SFU_NETNS_TRAP" // set: this is the run inside, and the trap namespace's name
)

var (
	labOwnTraps   = []string{"127.0.0.1", labSFU}                            // in the node's namespace
	labOtherTraps = []string{"169.254.169.254", "10.77.0.1", "192.168.77.1"} // in the trap namespace
	// Denied addresses with nothing behind them: only the packet filter
	// sees a packet to one.
	labDenied = []string{"10.99.0.1", "172.16.5.5", "192.168.99.1", "100.64.0.1", "169.254.1.1"}
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (network namespaces) and CI=true")
	}
	t.Skip("this test needs root for a network namespace")
}

// TestNoTrafficToNamedAddresses: two pion clients, one on UDP and one on
// ICE-TCP, reach the SFU with real DTLS-SRTP media while both also name,
// in their answers and trickled, candidates for UDP and TCP listeners on
// loopback, link-local, private and the node's own addresses and ports
// (and, in the first run, 380 public addresses). Media flows both ways;
// the listeners get no packet and no connection; and the namespace's
// packet filter counts no UDP from the SFU to anyone but the UDP client
// and no TCP connection but the TCP client's to the SFU. It holds with
// the node's settings, and with each guard alone: ICE-lite without the
// candidate filter, the filter with a full ICE agent.
func TestNoTrafficToNamedAddresses(t *testing.T) {
	if os.Getenv(labEnv) != "" {
		labChild(t)
		return
	}
	requireRoot(t)
	testtool.Require(t, "ip")
	testtool.Require(t, "iptables")
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	node, trap := "duetsfu"+hex.EncodeToString(b), "duettrap"+hex.EncodeToString(b)
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		for _, ns := range []string{node, trap} {
			if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
				for _, pid := range strings.Fields(string(out)) {
					_ = exec.Command("kill", "-9", pid).Run()
				}
			}
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	for _, ns := range []string{node, trap} {
		run("ip", "netns", "add", ns)
		run("ip", "-n", ns, "link", "set", "lo", "up")
	}
	run("ip", "-n", node, "link", "add", "v0", "type", "veth", "peer", "name", "t0", "netns", trap)
	for _, a := range []string{labSFU, labClientU, labClientT} {
		run("ip", "-n", node, "addr", "add", a+"/24", "dev", "v0")
	}
	for _, a := range []string{labRouter + "/24", "10.77.0.1/24", "192.168.77.1/24", "169.254.169.254/16"} {
		run("ip", "-n", trap, "addr", "add", a, "dev", "t0")
	}
	run("ip", "-n", node, "link", "set", "v0", "up")
	run("ip", "-n", trap, "link", "set", "t0", "up")
	run("ip", "-n", node, "route", "add", "default", "via", labRouter, "dev", "v0")

	// The rest runs in the node's namespace: this test binary again.
	cmd := exec.Command("ip", "netns", "exec", node, os.Args[0], "-test.run", "^TestNoTrafficToNamedAddresses$", "-test.v", "-test.count=1", "-test.timeout=3m")
	cmd.Env = append(os.Environ(), labEnv+"="+trap)
	out, err := cmd.CombinedOutput()
	t.Logf("in namespace %s:\n%s", node, out)
	if err != nil {
		t.Fatalf("the run in the namespace failed: %v", err)
	}
}

// inNetns runs f on an OS thread moved into namespace ns: the sockets f
// makes live there. The thread is never unlocked, so it ends with its
// goroutine instead of going back to the scheduler.
func inNetns(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}

// labChild is the test inside the namespace.
func labChild(t *testing.T) {
	traps := &traps{ports: []int{7001, 80}}
	traps.listen(t, labOwnTraps)
	if err := inNetns(os.Getenv(labEnv), func() error { traps.listen(t, labOtherTraps); return nil }); err != nil {
		t.Fatalf("entering the trap namespace: %v", err)
	}
	for _, v := range []struct {
		name  string
		opt   Options
		flood bool // 380 public candidates too: only a lite agent leaves them alone
	}{
		{name: "the node's settings", flood: true},
		{name: "ICE-lite alone", opt: Options{noFilter: true}, flood: true},
		{name: "the filter alone, full ICE", opt: Options{fullICE: true}},
	} {
		t.Run(v.name, func(t *testing.T) {
			labRun(t, traps, v.opt, v.flood)
		})
	}
}

// traps counts what reaches the UDP and TCP listeners on the trap
// addresses.
type traps struct {
	ports []int
	udp   atomic.Int64
	tcp   atomic.Int64
	mu    sync.Mutex
	seen  []string
}

func (tr *traps) hit(what string) {
	tr.mu.Lock()
	tr.seen = append(tr.seen, what)
	tr.mu.Unlock()
}

func (tr *traps) listen(t *testing.T, addrs []string) {
	for _, a := range addrs {
		for _, port := range tr.ports {
			addr := net.JoinHostPort(a, strconv.Itoa(port))
			pc, err := net.ListenPacket("udp4", addr)
			if err != nil {
				t.Errorf("trap %s: %v", addr, err)
				return
			}
			ln, err := net.Listen("tcp4", addr)
			if err != nil {
				t.Errorf("trap %s: %v", addr, err)
				return
			}
			t.Cleanup(func() { _ = pc.Close(); _ = ln.Close() })
			go func() {
				buf := make([]byte, 1500)
				for {
					_, from, err := pc.ReadFrom(buf)
					if err != nil {
						return
					}
					tr.udp.Add(1)
					tr.hit("udp " + addr + " from " + from.String())
				}
			}()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					tr.tcp.Add(1)
					tr.hit("tcp " + addr + " from " + c.RemoteAddr().String())
					_ = c.Close()
				}
			}()
		}
	}
}

// ipt runs iptables in the namespace (the test runs inside it).
func ipt(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("iptables", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("iptables %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// strayRules makes two counting chains: UDP that is neither the UDP
// client's own nor the SFU's port answering it, and TCP connection
// attempts other than the TCP client's to the SFU's TCP port.
func strayRules(t *testing.T, udpPort, tcpPort int) {
	_ = exec.Command("iptables", "-F", "OUTPUT").Run()
	for _, c := range []string{"DUET_UDP", "DUET_TCP"} {
		_ = exec.Command("iptables", "-F", c).Run()
		_ = exec.Command("iptables", "-X", c).Run()
		ipt(t, "-N", c)
	}
	ipt(t, "-A", "OUTPUT", "-p", "udp", "-j", "DUET_UDP")
	ipt(t, "-A", "DUET_UDP", "-s", labClientU, "-j", "RETURN")
	ipt(t, "-A", "DUET_UDP", "-p", "udp", "-s", labSFU, "--sport", strconv.Itoa(udpPort), "-d", labClientU, "-j", "RETURN")
	ipt(t, "-A", "DUET_UDP", "-j", "ACCEPT")
	ipt(t, "-A", "OUTPUT", "-p", "tcp", "--syn", "-j", "DUET_TCP")
	ipt(t, "-A", "DUET_TCP", "-p", "tcp", "-s", labClientT, "-d", labSFU, "--dport", strconv.Itoa(tcpPort), "-j", "RETURN")
	ipt(t, "-A", "DUET_TCP", "-j", "ACCEPT")
}

// strays is the packet count of chain's last rule.
func strays(t *testing.T, chain string) int {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(ipt(t, "-L", chain, "-v", "-x", "-n")), "\n")
	f := strings.Fields(lines[len(lines)-1])
	n, err := strconv.Atoi(f[0])
	if err != nil || len(f) < 3 || f[2] != "ACCEPT" {
		t.Fatalf("reading the %s counter from %q", chain, lines)
	}
	return n
}

// hostile are candidates naming every trap, the node's own ports, and
// names, in every form a client could send.
func hostile(udpPort, tcpPort int) []string {
	var out []string
	n := 1000
	add := func(format string, args ...any) {
		n++
		out = append(out, fmt.Sprintf("candidate:%d ", n)+fmt.Sprintf(format, args...))
	}
	targets := []string{}
	for _, a := range append(append(append([]string{}, labOwnTraps...), labOtherTraps...), labDenied...) {
		for _, p := range []int{7001, 80} {
			targets = append(targets, net.JoinHostPort(a, strconv.Itoa(p)))
		}
	}
	for _, a := range []string{labSFU, "127.0.0.1"} {
		for _, p := range []int{udpPort, tcpPort} {
			targets = append(targets, net.JoinHostPort(a, strconv.Itoa(p)))
		}
	}
	targets = append(targets, "[::ffff:127.0.0.1]:7001", "[::ffff:10.77.0.1]:7001", "[::ffff:169.254.169.254]:80")
	for _, hp := range targets {
		ap := netip.MustParseAddrPort(hp)
		a, p := ap.Addr().String(), ap.Port()
		add("1 udp 2130706431 %s %d typ host", a, p)
		add("1 udp 1694498815 %s %d typ srflx raddr 0.0.0.0 rport 0", a, p)
		add("1 udp 16777215 %s %d typ relay raddr 0.0.0.0 rport 0", a, p)
		add("1 tcp 1518280447 %s %d typ host tcptype passive", a, p)
		add("1 tcp 1518280447 %s %d typ host tcptype so", a, p)
		add("1 tcp 1518280447 %s 9 typ host tcptype active", a)
	}
	add("1 udp 2130706431 6c1f6f3e-1f0b-4c1e-9f33-2b1a5c9d7e10.local 7001 typ host")
	add("1 udp 2130706431 metadata.invalid 80 typ host")
	return out
}

// withCandidates puts lines as a=candidate into the answer's first media
// section.
func withCandidates(answer string, lines []string) string {
	parts := strings.Split(answer, "\r\n")
	at, media := len(parts), 0
	for i, l := range parts {
		if strings.HasPrefix(l, "m=") {
			if media++; media == 2 {
				at = i
				break
			}
		}
	}
	if at == len(parts) && parts[len(parts)-1] == "" {
		at--
	}
	var extra []string
	for _, l := range lines {
		extra = append(extra, "a="+l)
	}
	out := append(append(append([]string{}, parts[:at]...), extra...), parts[at:]...)
	return strings.Join(out, "\r\n")
}

func labRun(t *testing.T, tr *traps, opt Options, flood bool) {
	tr.udp.Store(0)
	tr.tcp.Store(0)
	peers, err := turn.NewPeerPolicy(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	opt.ListenIP, opt.PublicIP, opt.Peers, opt.Logger, opt.Registerer = labSFU, labSFU, peers, discard(), reg
	s, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	udpPort, tcpPort := s.Ports()
	strayRules(t, udpPort, tcpPort)

	// One client on UDP from its one address, one on ICE-TCP from its.
	client := func(addr string, nt webrtc.NetworkType) *testtool.PionPeer {
		ip := net.ParseIP(addr)
		p := testtool.NewPionPeerWith(t, func(se *webrtc.SettingEngine) {
			se.SetNetworkTypes([]webrtc.NetworkType{nt})
			se.SetIPFilter(func(a net.IP) bool { return a.Equal(ip) })
			se.SetIncludeLoopbackCandidate(false)
			se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
		})
		t.Cleanup(p.Close)
		return p
	}
	clients := [2]*testtool.PionPeer{client(labClientU, webrtc.NetworkTypeUDP4), client(labClientT, webrtc.NetworkTypeTCP4)}

	room, err := s.Open("lab")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(room.Close)
	var mu sync.Mutex
	offers := [2]string{}
	var theirs [2][]webrtc.ICECandidateInit
	if err := room.Start(func(side int, sig Signal) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case sig.SDP != "":
			offers[side] = sig.SDP
		case sig.Candidate != nil:
			theirs[side] = append(theirs[side], *sig.Candidate)
		}
	}); err != nil {
		t.Fatal(err)
	}
	bad := hostile(udpPort, tcpPort)
	mid := "0"
	trickle := func(side int, lines []string) {
		for _, l := range lines {
			// Unfiltered, pion refuses some itself.
			if err := room.Candidate(side, &webrtc.ICECandidateInit{Candidate: l, SDPMid: &mid}); err != nil && s.filter != nil {
				t.Fatalf("a candidate made an error: %v", err)
			}
		}
	}
	for side, c := range clients {
		if flood { // ahead of the answer: these wait for it
			var pub []string
			for i := range 380 {
				pub = append(pub, fmt.Sprintf("candidate:%d 1 udp 2130706431 203.0.%d.%d 40000 typ host", 5000+i, 113+i/250, i%250+1))
			}
			trickle(side, pub)
		}
		mu.Lock()
		offer := offers[side]
		mu.Unlock()
		if err := room.Answer(side, withCandidates(c.Answer(offer), bad)); err != nil {
			t.Fatalf("answer with hostile candidates: %v", err)
		}
		trickle(side, bad)
	}
	// The node's candidates, until both legs connect.
	added := [2]int{}
	deadline := time.Now().Add(20 * time.Second)
	for clients[0].PC.ConnectionState() != webrtc.PeerConnectionStateConnected || clients[1].PC.ConnectionState() != webrtc.PeerConnectionStateConnected {
		if time.Now().After(deadline) {
			t.Fatalf("not connected: UDP client %s, TCP client %s", clients[0].PC.ConnectionState(), clients[1].PC.ConnectionState())
		}
		mu.Lock()
		for side, c := range clients {
			for _, cand := range theirs[side][added[side]:] {
				if err := c.PC.AddICECandidate(cand); err != nil {
					t.Fatal(err)
				}
				added[side]++
			}
		}
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() { defer wg.Done(); c.Send(150) }()
	}
	wg.Wait()
	for i, c := range clients {
		eventually(t, "audio and video through the SFU", func() bool { return c.Got[0].Load() >= 50 && c.Got[1].Load() >= 50 })
		t.Logf("client %d received %d audio and %d video packets", i, c.Got[0].Load(), c.Got[1].Load())
	}
	if pair, err := clients[1].PC.SCTP().Transport().ICETransport().GetSelectedCandidatePair(); err != nil || pair == nil || pair.Local.Protocol != webrtc.ICEProtocolTCP {
		t.Fatalf("the TCP client's selected pair is %v (%v), want ICE-TCP", pair, err)
	}
	// A full agent checks a new pair within milliseconds and retries for
	// seconds; give any stray check time to show.
	time.Sleep(3 * time.Second)

	tr.mu.Lock()
	seen := strings.Join(tr.seen, "\n")
	tr.seen = nil
	tr.mu.Unlock()
	if tr.udp.Load() != 0 || tr.tcp.Load() != 0 {
		t.Errorf("the listeners got %d UDP packets and %d TCP connections:\n%s", tr.udp.Load(), tr.tcp.Load(), seen)
	}
	if n := strays(t, "DUET_UDP"); n != 0 {
		t.Errorf("%d UDP packets went elsewhere than between the UDP client and the SFU's port", n)
	}
	if n := strays(t, "DUET_TCP"); n != 0 {
		t.Errorf("%d TCP connection attempts other than the TCP client's to the SFU", n)
	}
	if s.filter != nil {
		for _, r := range []string{dropPolicy, dropOwn, dropTCP, dropMDNS, dropHostname} {
			if v := dropped(t, reg, r); v == 0 {
				t.Errorf("no candidate dropped for %s", r)
			}
		}
		if flood {
			if v := dropped(t, reg, dropCap); v != 2*(380-maxCandidatesPerLeg) {
				t.Errorf("dropped{reason=cap} = %v, want %d", v, 2*(380-maxCandidatesPerLeg))
			}
		}
	}
}

func dropped(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range families {
		if fam.GetName() != "duet_sfu_candidates_dropped_total" {
			continue
		}
		for _, m := range fam.GetMetric() {
			if labelValue(m, "reason") == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatal(errors.New("no duet_sfu_candidates_dropped_total"))
	return 0
}
