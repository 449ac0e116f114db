package sfu

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"sync"
	"syscall"
	"testing"

	"github.com/pion/transport/v4/test"
)

// spoofer sends UDP datagrams with any source address, as an off-path
// attacker who knows a client's address and port can.
type spoofer struct{ fd int }

func newSpoofer(t *testing.T) *spoofer {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
	if err != nil {
		t.Fatalf("raw socket (needs root): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	return &spoofer{fd: fd}
}

func (s *spoofer) send(t *testing.T, from, to netip.AddrPort, payload []byte) {
	p := make([]byte, 28+len(payload))
	p[0], p[8], p[9] = 0x45, 64, syscall.IPPROTO_UDP // the kernel fills length, id and checksum
	src, dst := from.Addr().As4(), to.Addr().As4()
	copy(p[12:16], src[:])
	copy(p[16:20], dst[:])
	binary.BigEndian.PutUint16(p[20:], from.Port())
	binary.BigEndian.PutUint16(p[22:], to.Port())
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload))) // checksum 0: none, legal on IPv4
	copy(p[28:], payload)
	if err := syscall.Sendto(s.fd, p, 0, &syscall.SockaddrInet4{Addr: dst}); err != nil {
		t.Fatal(err)
	}
}

// TestShortcutSpoofedFlood: an attacker who spoofs a connected client's
// address floods the SFU's port with RTP of the client's own streams:
// forged payloads, headers whose CSRC, extension and padding lengths
// point past the datagram, and a spray of other SSRCs. None of it is
// forwarded, the leg's shortcut stays on, the leg keeps no more streams
// than its bound, and the strangers' media still flows afterwards.
func TestShortcutSpoofedFlood(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	s, room, peers := connectedRoom(t, browserLikePeer)
	send := func(n int) {
		var wg sync.WaitGroup
		for _, p := range peers {
			wg.Add(1)
			go func() { defer wg.Done(); p.Send(n) }()
		}
		wg.Wait()
	}
	send(50)
	for _, p := range peers {
		eventually(t, "media before the flood", func() bool { return p.Got[0].Load() >= 25 && p.Got[1].Load() >= 25 })
	}
	victim := room.legs[0]
	var from netip.AddrPort
	for ap, sc := range *s.cuts.table.Load() {
		if sc == victim.cut {
			from = ap
		}
	}
	if !from.IsValid() {
		t.Fatal("the leg has no shortcut")
	}
	udp, _ := s.Ports()
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(udp))
	ssrc := victim.in[1].Load()
	a, b := room.Figures()
	forwardedBefore := a.Packets + b.Packets
	droppedBefore := counted(t, s.cuts.dropped)

	rng := rand.New(rand.NewPCG(1, 2))
	hostile := func(i int) []byte {
		h := make([]byte, 12, 1200)
		h[0], h[1] = 0x80, 96
		binary.BigEndian.PutUint16(h[2:], uint16(rng.Uint32()))
		binary.BigEndian.PutUint32(h[8:], ssrc)
		switch i % 4 {
		case 0: // a forged payload
			h = h[:1200]
			for j := 12; j < len(h); j++ {
				h[j] = byte(rng.Uint32())
			}
		case 1: // 15 CSRCs announced, none there
			h[0] |= 0x0f
		case 2: // an extension of 0xffff words
			h[0] |= 0x10
			h = append(h, 0xbe, 0xde, 0xff, 0xff)
		case 3: // padding longer than the packet
			h[0] |= 0x20
			h = append(h, make([]byte, 20)...)
			h[len(h)-1] = 0xff
		}
		return h
	}
	sp := newSpoofer(t)
	const rounds, perRound = 40, 100
	sent := uint64(0)
	for r := 0; r < rounds; r++ {
		for i := 0; i < perRound; i++ {
			sp.send(t, from, to, hostile(i))
		}
		sent += perRound
		// what the socket took is read before the next round: the flood
		// then measures the shortcut, not the kernel's buffer
		eventually(t, "the round dropped", func() bool { return counted(t, s.cuts.dropped)-droppedBefore >= sent })
		// and a spray of SSRCs the client never sent, which go to pion
		for i := 0; i < 20; i++ {
			spray := hostile(0)
			binary.BigEndian.PutUint32(spray[8:], rng.Uint32())
			sp.send(t, from, to, spray)
		}
	}
	a, b = room.Figures()
	if got := a.Packets + b.Packets; got != forwardedBefore {
		t.Fatalf("forwarded %d packets during the flood", got-forwardedBefore)
	}
	victim.cut.mu.Lock()
	off := victim.cut.off
	victim.cut.mu.Unlock()
	if off {
		t.Fatal("the flood turned the leg's shortcut off")
	}
	victim.bufMu.Lock()
	streams := len(victim.bufs)
	victim.bufMu.Unlock()
	if streams > maxDirectStreams {
		t.Fatalf("the leg keeps %d streams", streams)
	}

	takenBefore := counted(t, s.cuts.taken)
	got0, got1 := peers[0].Got[1].Load(), peers[1].Got[1].Load()
	send(100)
	eventually(t, "media after the flood", func() bool {
		return peers[0].Got[1].Load()-got0 >= 50 && peers[1].Got[1].Load()-got1 >= 50
	})
	if counted(t, s.cuts.taken) == takenBefore {
		t.Fatal("the shortcut carried nothing after the flood")
	}
	t.Logf("%d spoofed packets dropped, %d SSRCs sprayed; %d streams kept", sent, rounds*20, streams)
}
