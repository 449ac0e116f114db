package sfu

import (
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/pion/transport/v5/packetio"
)

// TestRelayBufferOrder: packets queued before arming are read in order,
// arming waits until the queue is empty, and after it every packet goes
// to deliver on the writer's goroutine, while Read only waits for Close.
func TestRelayBufferOrder(t *testing.T) {
	b := newRelayBuffer(rtpBufferLimit)
	for i := byte(1); i <= 3; i++ {
		if _, err := b.Write([]byte{i}); err != nil {
			t.Fatal(err)
		}
	}
	var got []byte
	deliver := func(p []byte) { got = append(got, p[0]) }
	buf := make([]byte, 10)
	for want := byte(1); want <= 3; want++ {
		if b.arm(deliver) {
			t.Fatalf("armed with packet %d still queued", want)
		}
		n, err := b.Read(buf)
		if err != nil || n != 1 || buf[0] != want {
			t.Fatalf("read %v %v, want packet %d", buf[:n], err, want)
		}
		got = append(got, buf[0])
	}
	if !b.arm(deliver) {
		t.Fatal("not armed with the queue empty")
	}
	for i := byte(4); i <= 6; i++ {
		if n, err := b.Write([]byte{i}); err != nil || n != 1 {
			t.Fatalf("direct write: %d %v", n, err)
		}
	}
	if string(got) != "\x01\x02\x03\x04\x05\x06" {
		t.Fatalf("delivered %v, want 1..6 in order", got)
	}
	read := make(chan error, 1)
	go func() { _, err := b.Read(buf); read <- err }()
	select {
	case err := <-read:
		t.Fatalf("armed Read returned %v before Close", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-read; !errors.Is(err, io.EOF) {
		t.Fatalf("Read after Close: %v, want EOF", err)
	}
	if _, err := b.Write([]byte{7}); err == nil {
		t.Fatal("direct write after Close succeeded")
	}
	if len(got) != 6 {
		t.Fatalf("delivered after Close: %v", got)
	}
	if b.arm(deliver) {
		t.Fatal("a closed buffer armed")
	}
}

// TestRelayBufferArmRace: a writer racing the arming loses and reorders
// nothing (run with -race).
func TestRelayBufferArmRace(t *testing.T) {
	const n = 2000
	b := newRelayBuffer(rtpBufferLimit)
	var mu sync.Mutex
	var got []uint16
	deliver := func(p []byte) {
		mu.Lock()
		got = append(got, uint16(p[0])<<8|uint16(p[1]))
		mu.Unlock()
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			if _, err := b.Write([]byte{byte(i >> 8), byte(i)}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	buf := make([]byte, 10)
	for !b.arm(deliver) {
		m, err := b.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		deliver(buf[:m])
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != n {
		t.Fatalf("delivered %d packets, want %d", len(got), n)
	}
	for i, seq := range got {
		if seq != uint16(i) {
			t.Fatalf("packet %d is %d: out of order", i, seq)
		}
	}
}

// TestLegKeepsBoundedBuffers: the leg keeps RTP buffers for arming, one
// per SSRC up to maxDirectStreams, never RTCP ones, and forgets a buffer
// when pion closes it.
func TestLegKeepsBoundedBuffers(t *testing.T) {
	l := &leg{bufs: map[uint32]*relayBuffer{}}
	rtcp := l.buffer(packetio.RTCPBufferPacket, 1)
	if len(l.bufs) != 0 {
		t.Fatal("an RTCP buffer kept for arming")
	}
	var first io.ReadWriteCloser
	for ssrc := uint32(1); ssrc <= maxDirectStreams+5; ssrc++ {
		b := l.buffer(packetio.RTPBufferPacket, ssrc)
		if ssrc == 1 {
			first = b
		}
	}
	if len(l.bufs) != maxDirectStreams {
		t.Fatalf("kept %d buffers, want %d", len(l.bufs), maxDirectStreams)
	}
	_ = first.Close()
	_ = rtcp.Close()
	if _, ok := l.bufs[1]; ok || len(l.bufs) != maxDirectStreams-1 {
		t.Fatalf("closed buffer still kept: %d kept", len(l.bufs))
	}
}
