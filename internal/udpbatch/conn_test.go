package udpbatch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

func listen(t testing.TB, network, addr string, opt Options) *Conn {
	t.Helper()
	c, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Skipf("%s %s: %v", network, addr, err)
	}
	u := c.(*net.UDPConn)
	_ = u.SetReadBuffer(4 << 20)
	_ = u.SetWriteBuffer(4 << 20)
	bc := New(u, opt)
	t.Cleanup(func() { _ = bc.Close() })
	return bc
}

func addrOf(c *Conn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// read returns the next datagram's payload, failing after a second.
func read(t testing.TB, c *Conn) ([]byte, netip.AddrPort) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 4096)
	n, from, err := c.ReadFromAddrPort(buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return buf[:n], from
}

// TestManyWritersAllArrive: four goroutines write 2,000 datagrams of
// sizes from 2 bytes up through shared batches; every one arrives
// intact, once, from the writer's address.
func TestManyWritersAllArrive(t *testing.T) {
	a := listen(t, "udp4", "127.0.0.1:0", Options{})
	b := listen(t, "udp4", "127.0.0.1:0", Options{})
	const writers, each = 4, 500
	size := func(w, i int) int { return 2 + (w*each+i)%1400 }
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				p := make([]byte, size(w, i))
				binary.BigEndian.PutUint16(p, uint16(w<<12|i))
				if _, err := a.WriteToAddrPort(p, addrOf(b)); err != nil {
					t.Error(err)
					return
				}
				if i%20 == 19 {
					time.Sleep(time.Millisecond) // let the reader keep up
				}
			}
		}()
	}
	seen := map[uint16]bool{}
	for range writers * each {
		p, from := read(t, b)
		if from != addrOf(a) {
			t.Fatalf("from %v, want %v", from, addrOf(a))
		}
		v := binary.BigEndian.Uint16(p)
		if w, i := int(v>>12), int(v&0xfff); len(p) != size(w, i) || seen[v] {
			t.Fatalf("datagram %d/%d: %d bytes (want %d), seen before %v", w, i, len(p), size(w, i), seen[v])
		}
		seen[v] = true
	}
	wg.Wait()
}

// TestOneWriterInOrder: one writer's datagrams arrive in the order it
// wrote them (one flusher sends the batches in turn).
func TestOneWriterInOrder(t *testing.T) {
	a := listen(t, "udp4", "127.0.0.1:0", Options{Batch: 8, MinBatch: -1})
	b := listen(t, "udp4", "127.0.0.1:0", Options{})
	go func() {
		for i := range 1000 {
			_, _ = a.WriteToAddrPort(binary.BigEndian.AppendUint16(nil, uint16(i)), addrOf(b))
			if i%16 == 15 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	for i := range 1000 {
		if p, _ := read(t, b); binary.BigEndian.Uint16(p) != uint16(i) {
			t.Fatalf("datagram %d arrived when %d was due", binary.BigEndian.Uint16(p), i)
		}
	}
}

// TestLoneDatagramIsNotHeld: sparse datagrams (further apart than
// Linger/MinBatch) go out directly: with an hour's linger each still
// arrives. Always batching, a lone one leaves once it has lingered.
func TestLoneDatagramIsNotHeld(t *testing.T) {
	b := listen(t, "udp4", "127.0.0.1:0", Options{})
	sparse := listen(t, "udp4", "127.0.0.1:0", Options{Linger: time.Hour})
	for range 3 {
		if _, err := sparse.WriteToAddrPort([]byte("lone"), addrOf(b)); err != nil {
			t.Fatal(err)
		}
		if p, _ := read(t, b); string(p) != "lone" {
			t.Fatalf("got %q", p)
		}
	}
	always := listen(t, "udp4", "127.0.0.1:0", Options{Linger: 20 * time.Millisecond, MinBatch: -1})
	for range 3 {
		start := time.Now()
		if _, err := always.WriteToAddrPort([]byte("lone"), addrOf(b)); err != nil {
			t.Fatal(err)
		}
		if p, _ := read(t, b); string(p) != "lone" {
			t.Fatalf("got %q", p)
		}
		if d := time.Since(start); d < 15*time.Millisecond {
			t.Fatalf("arrived after %v, before its 20 ms linger", d)
		}
	}
}

// TestDenseWritesBatch: datagrams written back to back (after the first
// few, while the average gap falls) wait for a full batch or the linger:
// with an hour's linger some are still held when the reader gives up,
// and Close sends them.
func TestDenseWritesBatch(t *testing.T) {
	a := listen(t, "udp4", "127.0.0.1:0", Options{Batch: 8, Linger: time.Hour})
	b := listen(t, "udp4", "127.0.0.1:0", Options{})
	const n = 100
	for i := range n {
		if _, err := a.WriteToAddrPort([]byte{byte(i)}, addrOf(b)); err != nil {
			t.Fatal(err)
		}
	}
	got := 0
	buf := make([]byte, 10)
	for ; got < n; got++ {
		_ = b.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, _, err := b.ReadFromAddrPort(buf); err != nil {
			break
		}
	}
	if got == n {
		t.Fatal("every datagram went out at once: nothing was batched")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	for ; got < n; got++ {
		read(t, b)
	}
}

// TestFullBatchLeavesAtOnce: with an hour's linger a full batch goes
// as soon as it fills, and Close sends the partial rest.
func TestFullBatchLeavesAtOnce(t *testing.T) {
	a := listen(t, "udp4", "127.0.0.1:0", Options{Batch: 8, Linger: time.Hour, MinBatch: -1})
	b := listen(t, "udp4", "127.0.0.1:0", Options{})
	for i := range 11 {
		if _, err := a.WriteToAddrPort([]byte{byte(i)}, addrOf(b)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 8 {
		if p, _ := read(t, b); !bytes.Equal(p, []byte{byte(i)}) {
			t.Fatalf("datagram %d: %v", i, p)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 8; i < 11; i++ {
		if p, _ := read(t, b); !bytes.Equal(p, []byte{byte(i)}) {
			t.Fatalf("datagram %d after Close: %v", i, p)
		}
	}
	if _, err := a.WriteToAddrPort([]byte("late"), addrOf(b)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v", err)
	}
}

// TestRefusedDatagramIsSkippedAlone: an IPv6 destination on an IPv4
// socket and datagrams to port 0 (the kernel refuses them) are dropped
// and counted; the datagrams around them in the batch still arrive.
//
// With GSO the batch holds runs: the refused run to port 0 goes again
// one datagram each, and the run after it still arrives.
func TestRefusedDatagramIsSkippedAlone(t *testing.T) {
	zero := netip.MustParseAddrPort("127.0.0.1:0")
	for _, gso := range []bool{false, true} {
		a := listen(t, "udp4", "127.0.0.1:0", Options{Linger: time.Hour, Batch: 9, MinBatch: -1, GSO: gso})
		b := listen(t, "udp4", "127.0.0.1:0", Options{})
		dsts := []netip.AddrPort{addrOf(b), netip.MustParseAddrPort("[2001:db8::1]:5000"), addrOf(b),
			zero, zero, zero, addrOf(b), addrOf(b), addrOf(b)}
		for i, d := range dsts {
			if _, err := a.WriteToAddrPort([]byte{byte(i)}, d); err != nil {
				t.Fatal(err)
			}
		}
		for _, want := range []byte{0, 2, 6, 7, 8} {
			if p, _ := read(t, b); !bytes.Equal(p, []byte{want}) {
				t.Fatalf("gso %v: got %v, want [%d]", gso, p, want)
			}
		}
		if runtime.GOOS == "linux" && a.Dropped() != 4 {
			t.Fatalf("gso %v: dropped %d, want 4", gso, a.Dropped())
		}
	}
}

// TestGSORuns: runs of equal-size datagrams to one address (some ended
// by a shorter one, some cut by another address or size) leave as
// segmented messages, and every datagram arrives at its own address,
// whole, with its own length, in order. On Linux the kernel must have
// taken them segmented (a refusal turns GSO off).
func TestGSORuns(t *testing.T) {
	for _, gso := range []bool{true, false} {
		a := listen(t, "udp4", "127.0.0.1:0", Options{Batch: 32, Linger: time.Hour, MinBatch: -1, GSO: gso})
		b := listen(t, "udp4", "127.0.0.1:0", Options{})
		c := listen(t, "udp4", "127.0.0.1:0", Options{})
		supported := a.sys != nil && a.sys.gso
		t.Logf("gso %v: kernel segments: %v", gso, supported)
		type dgram struct {
			to   *Conn
			size int
		}
		var plan []dgram
		run := func(to *Conn, size, n, tail int) {
			for range n {
				plan = append(plan, dgram{to, size})
			}
			if tail > 0 {
				plan = append(plan, dgram{to, tail})
			}
		}
		run(b, 1200, 5, 700)  // a video frame: equal packets, a short last one
		run(b, 1200, 3, 0)    // the next frame, to the same address
		run(c, 1200, 4, 1300) // another address; a longer one is not a tail
		run(b, 300, 1, 0)     // alone
		run(b, 1400, 70, 9)   // longer than one message may carry
		run(c, 3, 2, 2)       // tiny
		want := map[*Conn][][]byte{}
		for i, d := range plan {
			p := bytes.Repeat([]byte{byte(i)}, d.size)
			binary.BigEndian.PutUint16(p, uint16(i))
			want[d.to] = append(want[d.to], p)
			if _, err := a.WriteToAddrPort(p, addrOf(d.to)); err != nil {
				t.Fatal(err)
			}
		}
		if err := a.Close(); err != nil { // sends the partial batch
			t.Fatal(err)
		}
		for _, to := range []*Conn{b, c} {
			for i, w := range want[to] {
				if p, _ := read(t, to); !bytes.Equal(p, w) {
					t.Fatalf("gso %v: datagram %d to %v: %d bytes starting %v, want %d starting %v", gso, i, addrOf(to), len(p), p[:min(2, len(p))], len(w), w[:2])
				}
			}
		}
		if a.Dropped() != 0 {
			t.Fatalf("gso %v: %d dropped", gso, a.Dropped())
		}
		if supported && !a.sys.gso {
			t.Fatalf("the kernel refused a segmented message")
		}
	}
}

// TestSlowSenderUsesMoreBatches: while the sender is held (here: the
// lock it sends under), writes fill up to Batches batches rather than
// going out one system call each; once it lets go, all arrive in order.
func TestSlowSenderUsesMoreBatches(t *testing.T) {
	a := listen(t, "udp4", "127.0.0.1:0", Options{Batch: 4, Batches: 20, Linger: time.Hour, MinBatch: -1})
	b := listen(t, "udp4", "127.0.0.1:0", Options{})
	if a.sys == nil {
		t.Skip("no batching on this platform")
	}
	a.sending.Lock()
	const n = 4 * 18
	for i := range n {
		if _, err := a.WriteToAddrPort([]byte{byte(i)}, addrOf(b)); err != nil {
			t.Fatal(err)
		}
	}
	_ = b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, _, err := b.ReadFromAddrPort(make([]byte, 10)); err == nil {
		t.Fatal("a datagram went out while the sender was held")
	}
	a.sending.Unlock()
	a.sendQueued()
	for i := range n {
		if p, _ := read(t, b); !bytes.Equal(p, []byte{byte(i)}) {
			t.Fatalf("datagram %d: %v", i, p)
		}
	}
}

// TestOversizeAndNetAddr: a datagram over the slot size goes out on its
// own, intact; net.PacketConn's WriteTo and ReadFrom work too.
func TestOversizeAndNetAddr(t *testing.T) {
	a := listen(t, "udp4", "127.0.0.1:0", Options{MTU: 512})
	b := listen(t, "udp4", "127.0.0.1:0", Options{MTU: 4096})
	big := bytes.Repeat([]byte{7}, 3000)
	if _, err := a.WriteTo(big, b.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	_ = b.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 4096)
	n, from, err := b.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:n], big) || from.String() != a.LocalAddr().String() {
		t.Fatalf("ReadFrom: %d bytes from %v, %v", n, from, err)
	}
}

// TestIPv6: the same on an IPv6 socket.
func TestIPv6(t *testing.T) {
	a := listen(t, "udp6", "[::1]:0", Options{})
	b := listen(t, "udp6", "[::1]:0", Options{})
	if _, err := a.WriteToAddrPort([]byte("six"), addrOf(b)); err != nil {
		t.Fatal(err)
	}
	if p, from := read(t, b); string(p) != "six" || from != addrOf(a) {
		t.Fatalf("got %q from %v", p, from)
	}
}

// TestReadDeadline: a read deadline ends a batched read.
func TestReadDeadline(t *testing.T) {
	a := listen(t, "udp4", "127.0.0.1:0", Options{})
	_ = a.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, _, err := a.ReadFromAddrPort(make([]byte, 100)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
}

// TestNoAllocations: queueing a datagram (batched, or direct while
// writes are sparse) and reading one allocate nothing once warm.
func TestNoAllocations(t *testing.T) {
	for _, opt := range []Options{{MinBatch: -1}, {}, {MinBatch: -1, GSO: true}} {
		minBatch := opt.MinBatch
		opt.Linger = 50 * time.Microsecond
		a := listen(t, "udp4", "127.0.0.1:0", opt)
		b := listen(t, "udp4", "127.0.0.1:0", Options{})
		p, buf, dst := make([]byte, 1200), make([]byte, 1500), addrOf(b)
		_ = b.SetReadDeadline(time.Now().Add(10 * time.Second))
		round := func() {
			if _, err := a.WriteToAddrPort(p, dst); err != nil {
				t.Fatal(err)
			}
			if _, _, err := b.ReadFromAddrPort(buf); err != nil {
				t.Fatal(err)
			}
		}
		for range 100 {
			round()
		}
		if n := testing.AllocsPerRun(500, round); n != 0 {
			t.Fatalf("MinBatch %d, GSO %v: %v allocations per datagram written and read", minBatch, opt.GSO, n)
		}
	}
}

// BenchmarkWriteRead is a datagram queued on one Conn and read from
// another, batched, batched with GSO (every datagram the same size to
// the same address: a batch is one segmented message) and plain (one
// system call each): what batching costs and saves per datagram.
// lost/op is what the receive buffer dropped.
func BenchmarkWriteRead(b *testing.B) {
	for _, bc := range []struct {
		name         string
		batched, gso bool
	}{{"batched", true, false}, {"batched-gso", true, true}, {"plain", false, false}} {
		b.Run(bc.name, func(b *testing.B) {
			ca, cb := listen(b, "udp4", "127.0.0.1:0", Options{GSO: bc.gso}), listen(b, "udp4", "127.0.0.1:0", Options{})
			if !bc.batched {
				ca.sys, cb.sys = nil, nil
			}
			p, dst := make([]byte, 1200), addrOf(cb)
			got := make(chan int)
			go func() {
				buf, n := make([]byte, 1500), 0
				for {
					if _, _, err := cb.ReadFromAddrPort(buf); err != nil {
						got <- n
						return
					}
					n++
				}
			}()
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			cpu0 := processCPU()
			for i := range b.N {
				_, _ = ca.WriteToAddrPort(p, dst)
				if i%64 == 63 {
					time.Sleep(100 * time.Microsecond) // stay under the receive buffer
				}
			}
			time.Sleep(5 * time.Millisecond)
			_ = cb.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(b.N-<-got)/float64(b.N), "lost/op")
		})
	}
}

// processCPU is the process's user+system CPU time: the benchmark's
// measure, since batching moves work off the writing goroutine.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestAddrCache: one address per peer, right for every peer, also when
// peers collide in the table and when read from many goroutines; and a
// ReadFrom from a known peer allocates nothing.
func TestAddrCache(t *testing.T) {
	c := NewAddrCache(4) // small: collisions are certain
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(g), byte(i % 50)}), uint16(1000+i%7))
				if got := c.Get(ap); got.AddrPort() != ap {
					t.Errorf("Get(%v) = %v", ap, got)
					return
				}
			}
		}()
	}
	wg.Wait()
	big := NewAddrCache(1024)
	ap := netip.MustParseAddrPort("192.0.2.1:4000")
	if big.Get(ap) != big.Get(ap) {
		t.Fatal("one peer, two addresses")
	}
	if v6 := netip.MustParseAddrPort("[2001:db8::1]:4000"); big.Get(v6).AddrPort() != v6 {
		t.Fatal("IPv6 address wrong")
	}

	a := listen(t, "udp4", "127.0.0.1:0", Options{})
	b := listen(t, "udp4", "127.0.0.1:0", Options{})
	p, buf := make([]byte, 100), make([]byte, 1500)
	_ = b.SetReadDeadline(time.Now().Add(10 * time.Second))
	dst := b.LocalAddr()
	var first net.Addr
	round := func() {
		if _, err := a.WriteTo(p, dst); err != nil {
			t.Fatal(err)
		}
		_, from, err := b.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = from
		} else if from != first {
			t.Fatal("a second address for the same peer")
		}
	}
	round()
	if first.String() != a.LocalAddr().String() {
		t.Fatalf("ReadFrom says %v, the writer is %v", first, a.LocalAddr())
	}
	if n := testing.AllocsPerRun(200, round); n != 0 {
		t.Fatalf("%v allocations per WriteTo and ReadFrom", n)
	}
}
