package e2e

import (
	"net"
	"strings"
	"testing"
	"time"
)

// TestNATLabSFU runs the node as the README's operator does (public_ip,
// turn.secret, admin token; every listen address at its default) with
// both clients behind symmetric NATs.
//
// First the network of issue 16: the routers drop all UDP and the TURN
// port over TCP, so neither P2P nor TURN can work. The clients ask for
// the fallback by themselves, reach the node's SFU over ICE-TCP on
// public_ip:8443, and video flows both ways; the admin API shows the room
// on the sfu path with bytes growing both ways. Then with UDP open again
// the SFU carries the media over UDP, and with 5% random loss on one
// router video keeps flowing and the SFU's NACK counters move.
func TestNATLabSFU(t *testing.T) {
	lab := newNATLab(t)
	lab.startDuet()

	t.Run("the node reports public_ip as an address of its own", func(t *testing.T) {
		checkNetworkView(t, lab, true, "")
	})

	t.Run("UDP and TCP 3478 dropped: the clients fall back to the SFU over ICE-TCP", func(t *testing.T) {
		lab.blockUDP(t)
		var seen labRoom
		res := lab.peers([]string{"-fallback", "-p2p-timeout", "6s", "-connect-timeout", "40s", "-hold", "6s"}, func() {
			seen = lab.watchRoom("sfu", 60*time.Second, nil)
		})
		checkSFUPeers(t, res, "tcp")
		if seen.Room != res[0].Room {
			t.Fatalf("the admin API never showed the peers' room %s on the sfu path with bytes growing both ways (saw %+v)", res[0].Room, seen)
		}
		// The first media on this node, all of it over ICE-TCP, where the
		// shortcut never runs.
		checkShortcut(t, labShortcut(t, lab), 0, false)
	})

	t.Run("UDP open: the SFU over UDP", func(t *testing.T) {
		closeICETCP(t, lab)
		shortcut := labShortcut(t, lab)
		since := shortcut()
		// A 1 ms P2P budget: the clients fall back at once.
		var seen labRoom
		res := lab.peers([]string{"-fallback", "-p2p-timeout", "1ms", "-connect-timeout", "30s", "-hold", "5s"}, func() {
			seen = lab.watchRoom("sfu", 40*time.Second, nil)
		})
		checkSFUPeers(t, res, "udp")
		if seen.Room != res[0].Room {
			t.Fatalf("the admin API never showed the peers' room %s on the sfu path with bytes growing both ways (saw %+v)", res[0].Room, seen)
		}
		checkShortcut(t, shortcut, since, true)
	})

	t.Run("5% loss on one router: media keeps flowing, NACKs move", func(t *testing.T) {
		// Over ICE-TCP loss would be repaired by TCP itself: lose 5% of
		// the UDP on r1, with ICE-TCP closed.
		lab.inNS("r1", "iptables", "-A", "FORWARD", "-p", "udp", "-m", "statistic", "--mode", "random", "--probability", "0.05", "-j", "DROP")
		closeICETCP(t, lab)
		shortcut := labShortcut(t, lab)
		since := shortcut()
		var seen labRoom
		res := lab.peers([]string{"-fallback", "-p2p-timeout", "1ms", "-connect-timeout", "40s", "-hold", "10s"}, func() {
			seen = lab.watchRoom("sfu", 60*time.Second, func(r labRoom) bool { return r.AToB.NACKs+r.BToA.NACKs > 0 })
		})
		for i, r := range res {
			if !r.Connected || r.Path != "sfu" || r.Packets < 100 || r.Protocol != "udp" {
				t.Fatalf("peer %d: %+v, want video through the sfu over UDP under loss", i+1, r)
			}
		}
		if seen.AToB.NACKs+seen.BToA.NACKs == 0 {
			t.Fatalf("no NACKs counted under 5%% loss: %+v", seen)
		}
		t.Logf("under 5%% loss: %+v", seen)
		checkShortcut(t, shortcut, since, true)
	})
}

// shortcutSeries counts the RTP packets the SFU decrypted and forwarded
// on its UDP socket reader (its shortcut): only on UDP legs where the
// client answered active and the node is the DTLS server, never over
// ICE-TCP.
const shortcutSeries = "duet_sfu_shortcut_packets_total"

// checkShortcut: with used, the node's shortcut counter (read) grows past
// since within 10 s; without, it still reads since. It logs what it saw.
func checkShortcut(t *testing.T, read func() float64, since float64, used bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := read()
		if !used {
			if n != since {
				t.Fatalf("%s = %v, want %v: the shortcut ran on a leg it must not", shortcutSeries, n, since)
			}
			t.Logf("%s = %v (unused, as it should be)", shortcutSeries, n)
			return
		}
		if n > since {
			t.Logf("%s = %v (was %v)", shortcutSeries, n, since)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want > %v: the SFU's shortcut forwarded nothing", shortcutSeries, n, since)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// labShortcut reads the lab node's shortcut counter, for checkShortcut.
func labShortcut(t *testing.T, lab *natLab) func() float64 {
	return func() float64 { return labCounter(t, lab, shortcutSeries) }
}

// closeICETCP drops TCP to the SFU's port at both client routers for
// the rest of t. With it open as well, a client's agent may nominate its
// ICE-TCP pair when a busy box delays the UDP pair's checks (seen in
// about one run in four here), and a case about the SFU over UDP then
// tests ICE-TCP instead.
func closeICETCP(t *testing.T, lab *natLab) {
	t.Helper()
	lab.routersDrop(t, "-p", "tcp", "--dport", "8443")
}

// checkSFUPeers: both peers connected on the sfu path over protocol, to
// the SFU's port on public_ip, received video through it, and every
// candidate the SFU sent them carries public_ip.
func checkSFUPeers(t *testing.T, res [2]peerResult, protocol string) {
	t.Helper()
	want := net.JoinHostPort(labServerIP, "8443")
	for i, r := range res {
		if !r.Connected || r.Path != "sfu" {
			t.Fatalf("peer %d: %+v, want connected on the sfu path", i+1, r)
		}
		if r.Protocol != protocol {
			t.Fatalf("peer %d selected a %s pair, want %s", i+1, r.Protocol, protocol)
		}
		if r.RemoteAddr != want || r.Remote != "host" {
			t.Fatalf("peer %d reached the SFU at %s (%s), want its %s candidate %s", i+1, r.RemoteAddr, r.Remote, protocol, want)
		}
		if r.Packets < 50 {
			t.Fatalf("peer %d received %d packets through the SFU", i+1, r.Packets)
		}
		checkCandidates(t, i+1, r.RemoteCandidates)
	}
}

// checkCandidates: the SFU sent one UDP and one passive TCP candidate,
// both on public_ip:8443, and nothing else.
func checkCandidates(t *testing.T, peer int, cands []string) {
	t.Helper()
	want := net.JoinHostPort(labServerIP, "8443")
	var udp, tcp bool
	for _, c := range cands {
		switch c {
		case "udp " + want + " host":
			udp = true
		case "tcp " + want + " host":
			tcp = true
		default:
			t.Errorf("peer %d: the SFU sent the candidate %q; want only %s (UDP and passive TCP)", peer, c, want)
		}
	}
	if !udp || !tcp {
		t.Errorf("peer %d: the SFU's candidates %s lack UDP or TCP on %s", peer, strings.Join(cands, ", "), want)
	}
}
