package sfu

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"github.com/pion/transport/v5/packetio"
)

// Between the socket and the forward step, pion passes every packet
// through five goroutines and four buffers; each hand-off is a copy, a
// lock and a wake-up, and together they were half the node's CPU per
// forwarded packet. The last hand-off, from the leg's SRTP read loop to
// the track's reader, is one pion lets us replace: its
// SettingEngine.BufferFactory makes the buffer each decrypted stream is
// written to. A relayBuffer queues like pion's own until the track's
// forward loop arms it; from then on the SRTP loop forwards each packet
// itself as it writes it, and the track's reader only waits for the end.
// Where the node is the leg's DTLS server the shortcut (shortcut.go) goes
// further and takes an armed stream's packets off the socket; this path
// carries the rest (ICE-TCP, clients that are the DTLS server, what was
// already inside pion when the stream was armed).

// Limits on what a buffer queues before it is armed (or for ever, for
// RTCP and streams that are never forwarded): pion's own.
const (
	rtpBufferLimit  = 1000 * 1000
	rtcpBufferLimit = 100 * 1000
	// maxDirectStreams bounds the streams a leg keeps for arming: a
	// client can make the SRTP session open one per SSRC it sends.
	maxDirectStreams = 8
)

var errBufferClosed = errors.New("sfu: stream buffer closed")

// relayBuffer is the io.ReadWriteCloser pion's SRTP session writes one
// stream's decrypted packets to.
type relayBuffer struct {
	mu      sync.Mutex // orders queueing against arming
	fmu     sync.Mutex // one armed delivery at a time
	q       *packetio.Buffer
	deliver atomic.Pointer[func([]byte)]
	closed  atomic.Bool
	done    chan struct{}
	once    sync.Once
	onClose func()
}

func newRelayBuffer(limit int) *relayBuffer {
	q := packetio.NewBuffer()
	q.SetLimitSize(limit)
	return &relayBuffer{q: q, done: make(chan struct{})}
}

// Write is called by pion's SRTP read loop, one packet at a time; p is
// reused once it returns, so an armed deliver must be done with it by then.
func (b *relayBuffer) Write(p []byte) (int, error) {
	if f := b.deliver.Load(); f != nil {
		return b.direct(*f, p)
	}
	b.mu.Lock()
	if f := b.deliver.Load(); f != nil {
		b.mu.Unlock()
		return b.direct(*f, p)
	}
	n, err := b.q.Write(p, nil)
	b.mu.Unlock()
	return n, err
}

func (b *relayBuffer) direct(f func([]byte), p []byte) (int, error) {
	if b.closed.Load() {
		return 0, errBufferClosed
	}
	// Two writers meet here for a moment after arming: the shortcut
	// (shortcut.go) and pion's SRTP loop with what was already on its way.
	b.fmu.Lock()
	f(p)
	b.fmu.Unlock()
	return len(p), nil
}

// Read returns queued packets until the buffer is armed, and then waits
// for the end: nothing is queued any more.
func (b *relayBuffer) Read(p []byte) (int, error) {
	if b.deliver.Load() == nil {
		n, _, err := b.q.Read(p, nil)
		return n, err
	}
	<-b.done
	return 0, io.EOF
}

// arm hands every later packet to f on the writer's goroutine, unless
// packets are still queued: the caller reads and forwards those first and
// tries again, so the stream keeps its order.
func (b *relayBuffer) arm(f func([]byte)) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.q.Count() > 0 || b.closed.Load() {
		return false
	}
	b.deliver.Store(&f)
	return true
}

// Close ends reads (io.EOF) and direct delivery. Safe to call more than once.
func (b *relayBuffer) Close() error {
	b.once.Do(func() {
		b.closed.Store(true)
		close(b.done)
		_ = b.q.Close()
		if b.onClose != nil {
			b.onClose()
		}
	})
	return nil
}

// buffer is the leg's SettingEngine.BufferFactory. RTP buffers are kept
// by SSRC so the track's forward loop can arm its own.
func (l *leg) buffer(kind packetio.BufferPacketType, ssrc uint32) io.ReadWriteCloser {
	if kind != packetio.RTPBufferPacket {
		return newRelayBuffer(rtcpBufferLimit)
	}
	b := newRelayBuffer(rtpBufferLimit)
	l.bufMu.Lock()
	defer l.bufMu.Unlock()
	if _, taken := l.bufs[ssrc]; !taken && len(l.bufs) < maxDirectStreams {
		l.bufs[ssrc] = b
		b.onClose = func() {
			l.bufMu.Lock()
			if l.bufs[ssrc] == b {
				delete(l.bufs, ssrc)
			}
			l.bufMu.Unlock()
		}
	}
	return b
}

// directPath returns the buffer of the leg's stream ssrc and the receive
// bookkeeping its packets need, or nil when either is unknown (the
// stream is then read the ordinary way).
func (l *leg) directPath(ssrc uint32) (*relayBuffer, *recvStream, *feedback) {
	l.bufMu.Lock()
	b := l.bufs[ssrc]
	l.bufMu.Unlock()
	fb := l.fb.Load()
	if b == nil || fb == nil {
		return nil, nil, nil
	}
	rs := fb.incoming(ssrc)
	if rs == nil {
		return nil, nil, nil
	}
	return b, rs, fb
}

// setFeedback learns the leg's feedback interceptor as pion builds it.
func (l *leg) setFeedback(fb *feedback) { l.fb.Store(fb) }

// armed returns the leg's buffer for ssrc if it is armed and open: the
// shortcut may then forward the stream's packets through it.
func (l *leg) armed(ssrc uint32) *relayBuffer {
	l.bufMu.Lock()
	b := l.bufs[ssrc]
	l.bufMu.Unlock()
	if b == nil || b.deliver.Load() == nil || b.closed.Load() {
		return nil
	}
	return b
}
