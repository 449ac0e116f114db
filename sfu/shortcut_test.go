package sfu

import (
	"crypto/rand"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/prometheus/client_golang/prometheus"
)

func TestIsRTP(t *testing.T) {
	rtpHdr := func(b0, b1 byte) []byte { p := make([]byte, 12); p[0], p[1] = b0, b1; return p }
	for _, tc := range []struct {
		name string
		p    []byte
		want bool
	}{
		{"RTP, VP8", rtpHdr(0x80, 96), true},
		{"RTP, marker set", rtpHdr(0x90, 96|0x80), true},
		{"RTCP sender report", rtpHdr(0x80, 200), false},
		{"RTCP PSFB", rtpHdr(0x81, 206), false},
		{"STUN", rtpHdr(0x00, 0x01), false},
		{"DTLS handshake", rtpHdr(22, 0xfe), false},
		{"version 1", rtpHdr(0x40, 96), false},
		{"too short", []byte{0x80, 96, 0, 1}, false},
		{"empty", nil, false},
	} {
		if got := isRTP(tc.p); got != tc.want {
			t.Errorf("%s: isRTP = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestShortcutsTable(t *testing.T) {
	s := testShortcuts(t, 1)
	send, recv := keyedPair(t, false)
	l, got := armedLeg(t)
	a, b := &shortcut{}, newShortcut(l, s.worker(), recv, nil)
	at := func(ap string) *shortcut {
		m := s.table.Load()
		if m == nil {
			return nil
		}
		return (*m)[netip.MustParseAddrPort(ap)]
	}
	s.set(netip.MustParseAddrPort("192.0.2.1:5000"), a)
	s.set(netip.MustParseAddrPort("192.0.2.2:5000"), b)
	// a new pair moves a leg's shortcut: the old address no longer leads to it
	s.set(netip.MustParseAddrPort("192.0.2.1:6000"), a)
	if at("192.0.2.1:5000") != nil || at("192.0.2.1:6000") != a || at("192.0.2.2:5000") != b {
		t.Fatalf("after a move: %v", *s.table.Load())
	}
	s.remove(a)
	if at("192.0.2.1:6000") != nil || at("192.0.2.2:5000") != b {
		t.Fatalf("after remove: %v", *s.table.Load())
	}
	// what the socket reports as a v4-mapped address finds the same leg
	pkts := sealed(t, send, 42, 2)
	if !s.take(pkts[0], netip.MustParseAddrPort("[::ffff:192.0.2.2]:5000")) || got.Load() != 1 {
		t.Fatalf("a v4-mapped sender: delivered %d", got.Load())
	}
	if s.take(pkts[1], netip.MustParseAddrPort("192.0.2.3:5000")) || got.Load() != 1 {
		t.Fatal("took a packet from an address of no leg")
	}
	if s.take(make([]byte, 12), netip.MustParseAddrPort("192.0.2.2:5000")) {
		t.Fatal("took a packet that is not RTP")
	}
	if n := counted(t, s.taken); n != 1 {
		t.Fatalf("counted %d, want 1", n)
	}
}

// keyedPair returns a sender's SRTP context and the receiving context
// for the same keys, AES-GCM as the load generator and browsers use.
func keyedPair(t testing.TB, wrong bool) (send, recv *srtp.Context) {
	t.Helper()
	key, salt, other := make([]byte, 16), make([]byte, 12), make([]byte, 16)
	for _, b := range [][]byte{key, salt, other} {
		_, _ = rand.Read(b)
	}
	send, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		t.Fatal(err)
	}
	if wrong {
		key = other
	}
	recv, err = srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm, srtp.SRTPReplayProtection(srtpReplayWindow))
	if err != nil {
		t.Fatal(err)
	}
	return send, recv
}

// sealed returns n encrypted packets of ssrc, sequence numbers from 1.
func sealed(t testing.TB, send *srtp.Context, ssrc uint32, n int) [][]byte {
	t.Helper()
	out := make([][]byte, n)
	for i := range out {
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i + 1), SSRC: ssrc}, Payload: make([]byte, 1000)}
		plain, err := pkt.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if out[i], err = send.EncryptRTP(nil, plain, nil); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// armedLeg is a leg with one armed stream, ssrc 42, whose deliveries
// are counted.
func armedLeg(t testing.TB) (*leg, *atomic.Int64) {
	l := &leg{bufs: map[uint32]*relayBuffer{}}
	b := newRelayBuffer(rtpBufferLimit)
	l.bufs[42] = b
	var got atomic.Int64
	if !b.arm(func([]byte) { got.Add(1) }) {
		t.Fatal("arm refused")
	}
	return l, &got
}

// testShortcuts is a table with n workers and counters of its own.
func testShortcuts(t testing.TB, n int) *shortcuts {
	c := func() prometheus.Counter { return prometheus.NewCounter(prometheus.CounterOpts{Name: "c"}) }
	s := newShortcuts(n, c(), c(), c())
	t.Cleanup(s.stop)
	return s
}

func TestShortcutTake(t *testing.T) {
	t.Run("proven keys forward once, drop replays and forgeries", func(t *testing.T) {
		send, recv := keyedPair(t, false)
		l, got := armedLeg(t)
		sc := newShortcut(l, nil, recv, func(err error) { t.Fatalf("turned off: %v", err) })
		pkts := sealed(t, send, 42, 3)
		if sc.take(pkts[0]) != cutForwarded || got.Load() != 1 {
			t.Fatalf("a good packet: delivered %d", got.Load())
		}
		if sc.take(pkts[0]) != cutDropped || got.Load() != 1 {
			t.Fatalf("its replay: delivered %d, want it dropped", got.Load())
		}
		forged := append([]byte(nil), pkts[1]...)
		forged[len(forged)-1] ^= 1
		if sc.take(forged) != cutDropped || got.Load() != 1 {
			t.Fatalf("a forgery: delivered %d, want it dropped", got.Load())
		}
		if sc.take(pkts[1]) != cutForwarded || sc.take(pkts[2]) != cutForwarded || got.Load() != 3 {
			t.Fatalf("the rest: delivered %d, want 3", got.Load())
		}
	})
	t.Run("a stream not armed goes to pion", func(t *testing.T) {
		send, recv := keyedPair(t, false)
		l, got := armedLeg(t)
		sc := newShortcut(l, nil, recv, nil)
		if sc.take(sealed(t, send, 43, 1)[0]) != cutToPion || got.Load() != 0 {
			t.Fatal("took a stream that is not armed")
		}
	})
	t.Run("unproven keys leave every packet to pion, then turn off", func(t *testing.T) {
		send, recv := keyedPair(t, true)
		l, got := armedLeg(t)
		var off error
		sc := newShortcut(l, nil, recv, func(err error) { off = err })
		pkts := sealed(t, send, 42, shortcutProof+2)
		for i, p := range pkts {
			if sc.take(p) != cutToPion {
				t.Fatalf("packet %d taken with wrong keys", i)
			}
		}
		if off == nil || got.Load() != 0 {
			t.Fatalf("off %v, delivered %d", off, got.Load())
		}
	})
}

// TestShortcutTakeAllocs: the shortcut adds no allocation per packet.
func TestShortcutTakeAllocs(t *testing.T) {
	send, recv := keyedPair(t, false)
	l, _ := armedLeg(t)
	sc := newShortcut(l, nil, recv, nil)
	pkts := sealed(t, send, 42, 200)
	i := 0
	allocs := testing.AllocsPerRun(100, func() {
		if sc.take(pkts[i]) != cutForwarded {
			t.Fatal("not taken")
		}
		i++
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per packet", allocs)
	}

	// and through a worker, once its buffers are warm
	cuts := testShortcuts(t, 1)
	l2, got := armedLeg(t)
	send2, recv2 := keyedPair(t, false)
	from := netip.MustParseAddrPort("192.0.2.1:5000")
	cuts.set(from, newShortcut(l2, cuts.worker(), recv2, nil))
	pkts = sealed(t, send2, 42, 600)
	for _, p := range pkts[:300] {
		cuts.take(p, from)
	}
	eventually(t, "warm-up forwarded", func() bool { return got.Load() == 300 })
	i = 300
	allocs = testing.AllocsPerRun(100, func() {
		cuts.take(pkts[i], from)
		i++
		for got.Load() != int64(i) {
			runtime.Gosched()
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per packet through a worker", allocs)
	}
}

// TestShortcutWorkers: once a leg's keys are proven, the socket reader
// only queues its packets; the leg's worker forwards them in order, and
// what finds the queue full is dropped and counted, never handed to pion.
func TestShortcutWorkers(t *testing.T) {
	s := testShortcuts(t, 2)
	send, recv := keyedPair(t, false)
	l := &leg{bufs: map[uint32]*relayBuffer{}}
	b := newRelayBuffer(rtpBufferLimit)
	l.bufs[42] = b
	var mu sync.Mutex
	var seqs []uint16
	release := make(chan struct{})
	if !b.arm(func(p []byte) {
		<-release // the worker waits here until the queue is full
		mu.Lock()
		seqs = append(seqs, uint16(p[2])<<8|uint16(p[3]))
		mu.Unlock()
	}) {
		t.Fatal("arm refused")
	}
	from := netip.MustParseAddrPort("192.0.2.1:5000")
	sc := newShortcut(l, s.worker(), recv, nil)
	s.set(from, sc)
	pkts := sealed(t, send, 42, 2*cutQueueLimit)
	go func() {
		// the first packet proves the keys on the reader; it blocks there
		// until released, as a slow forward would
		if !s.take(pkts[0], from) {
			t.Error("first packet not taken")
		}
	}()
	for !sc.proven.Load() {
		runtime.Gosched()
	}
	for _, p := range pkts[1:] {
		if !s.take(p, from) {
			t.Fatal("a proven leg's packet went to pion")
		}
	}
	// the worker is held by the first packets it took; the rest queue up
	// to the limit and beyond it are dropped
	full := counted(t, s.queueFull)
	if full == 0 || full > cutQueueLimit {
		close(release)
		t.Fatalf("%d dropped for a full queue, want 1-%d", full, cutQueueLimit)
	}
	close(release)
	want := len(pkts) - int(full)
	eventually(t, "all queued forwarded", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seqs) == want
	})
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("out of order: %d after %d", seqs[i], seqs[i-1])
		}
	}
}
