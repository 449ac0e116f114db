package sfu

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetchat/duet/internal/udpbatch"
)

// Even forwarding on pion's SRTP loop (direct.go), a packet crossed four
// goroutines between the socket and the forward step: pion's ICE UDP mux
// reader, the ICE candidate's read loop, pion/webrtc's demultiplexer and
// the SRTP session's read loop, each with a buffer, a copy and a wake-up.
// The shortcut takes the packets of armed streams off the socket before
// pion sees them: the goroutine that read the datagram looks the sender
// up by address and queues the packet for the leg's worker
// (cutworker.go), which decrypts it with the leg's own SRTP context
// (keys.go) and forwards it. Everything else — STUN, DTLS, RTCP, streams
// not armed yet, legs on ICE-TCP, legs whose keys are not proven — goes
// to pion as before.
//
// What it trusts: only the selected ICE pair's remote address (which
// answered a check carrying the leg's credentials) is looked up, and a
// packet is forwarded only once it authenticates and passes the replay
// window. A packet that fails either is dropped once the keys are proven;
// before that it goes to pion, so a mistake in deriving the keys costs
// speed, never media.

// shortcutProof is how many packets in a row may fail to authenticate
// before a leg's keys are judged wrong and its shortcut is turned off.
const shortcutProof = 16

// shortcutConn is the SFU's UDP socket as pion's ICE mux sees it: reads
// that the shortcut takes never reach the mux.
type shortcutConn struct {
	*udpbatch.Conn
	table *shortcuts
}

// ReadFromAddrPort is what pion's mux calls (it prefers it to ReadFrom).
func (c *shortcutConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		n, ap, err := c.Conn.ReadFromAddrPort(b)
		if err != nil || !c.table.take(b[:n], ap) {
			return n, ap, err
		}
	}
}

// ReadFrom implements net.PacketConn the same way.
func (c *shortcutConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.Conn.ReadFrom(b)
		if err != nil {
			return n, addr, err
		}
		ua, ok := addr.(*net.UDPAddr)
		if !ok || !c.table.take(b[:n], ua.AddrPort()) {
			return n, addr, nil
		}
	}
}

// shortcuts maps a selected pair's remote address to its leg's shortcut.
// Reads are per packet and lock-free; writes (a leg connects, changes
// pair or ends) copy the map.
type shortcuts struct {
	mu      sync.Mutex
	table   atomic.Pointer[map[netip.AddrPort]*shortcut]
	workers []*cutWorker
	next    atomic.Uint32 // the worker the next leg gets
	done    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once

	taken     prometheus.Counter // packets forwarded by a shortcut
	dropped   prometheus.Counter // forgeries and replays it dropped
	queueFull prometheus.Counter // packets dropped as a worker's queue was full
}

// newShortcuts starts n workers; stop ends them.
func newShortcuts(n int, taken, dropped, queueFull prometheus.Counter) *shortcuts {
	s := &shortcuts{done: make(chan struct{}), taken: taken, dropped: dropped, queueFull: queueFull}
	for range max(n, 1) {
		w := newCutWorker()
		s.workers = append(s.workers, w)
		s.wg.Add(1)
		go func() { defer s.wg.Done(); w.run(s.done, s.count) }()
	}
	return s
}

func (s *shortcuts) stop() {
	s.once.Do(func() { close(s.done) })
	s.wg.Wait()
}

func (s *shortcuts) count(v verdict) {
	switch v {
	case cutForwarded:
		s.taken.Inc()
	case cutDropped:
		s.dropped.Inc()
	}
}

// worker picks the worker of a new leg's shortcut, in turn.
func (s *shortcuts) worker() *cutWorker {
	return s.workers[int(s.next.Add(1))%len(s.workers)]
}

func (s *shortcuts) update(f func(m map[netip.AddrPort]*shortcut)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[netip.AddrPort]*shortcut{}
	if old := s.table.Load(); old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	f(m)
	s.table.Store(&m)
}

// set routes ap's packets to sc, and none to sc from any other address.
func (s *shortcuts) set(ap netip.AddrPort, sc *shortcut) {
	s.update(func(m map[netip.AddrPort]*shortcut) {
		forget(m, sc)
		m[ap] = sc
	})
}

// remove forgets sc wherever it is.
func (s *shortcuts) remove(sc *shortcut) {
	s.update(func(m map[netip.AddrPort]*shortcut) { forget(m, sc) })
}

func forget(m map[netip.AddrPort]*shortcut, sc *shortcut) {
	for k, v := range m {
		if v == sc {
			delete(m, k)
		}
	}
}

// take reports true if p belongs to an armed stream of a leg whose
// shortcut is on, and queues it for the leg's worker, or, while the leg's
// keys are unproven, forwards it here. Otherwise p is untouched, for pion.
func (s *shortcuts) take(p []byte, from netip.AddrPort) bool {
	if !isRTP(p) {
		return false
	}
	m := s.table.Load()
	if m == nil {
		return false
	}
	sc := (*m)[netip.AddrPortFrom(from.Addr().Unmap(), from.Port())]
	if sc == nil {
		return false
	}
	if sc.proven.Load() {
		rb := sc.leg.armed(binary.BigEndian.Uint32(p[8:12]))
		if rb == nil {
			return false
		}
		if !sc.w.push(sc, rb, p) {
			s.queueFull.Inc()
		}
		return true
	}
	v := sc.take(p)
	s.count(v)
	return v != cutToPion
}

// verdict is what the shortcut did with a packet.
type verdict int

const (
	cutToPion verdict = iota
	cutForwarded
	cutDropped
)

// isRTP tells RTP from everything else on the port (RFC 7983, RFC 5761):
// version 2 and not an RTCP packet type.
func isRTP(p []byte) bool {
	return len(p) >= 12 && p[0]&0xc0 == 0x80 && (p[1] < 192 || p[1] > 223)
}

// decrypter is the leg's SRTP context as the shortcut uses it.
type decrypter interface {
	DecryptRTP(dst, encrypted []byte, h *rtp.Header) ([]byte, error)
}

// shortcut decrypts and forwards one leg's armed streams.
type shortcut struct {
	leg    *leg
	mu     sync.Mutex // one reader at a time: the context keeps replay state
	ctx    decrypter
	hdr    rtp.Header
	out    []byte
	proven atomic.Bool // set once, by take, under mu
	misses int
	off    bool
	w      *cutWorker // where the socket reader queues its packets
	// onOff is told once when the keys fail to prove themselves.
	onOff func(error)
}

func newShortcut(l *leg, w *cutWorker, ctx decrypter, onOff func(error)) *shortcut {
	return &shortcut{leg: l, w: w, ctx: ctx, out: make([]byte, 1500), onOff: onOff}
}

func (sc *shortcut) take(p []byte) verdict {
	rb := sc.leg.armed(binary.BigEndian.Uint32(p[8:12]))
	if rb == nil {
		return cutToPion
	}
	return sc.open(rb, p)
}

// open decrypts p and forwards it through rb, the buffer of its armed
// stream, which a worker's caller looked up when it queued p.
func (sc *shortcut) open(rb *relayBuffer, p []byte) verdict {
	if rb.closed.Load() {
		return cutToPion // the stream ended since: its packet goes nowhere
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.off {
		return cutToPion
	}
	out, err := sc.ctx.DecryptRTP(sc.out[:0], p, &sc.hdr)
	if err != nil {
		if sc.proven.Load() {
			return cutDropped // a forgery, a replay or garbage, as pion would
		}
		if sc.misses++; sc.misses >= shortcutProof {
			sc.off = true
			if sc.onOff != nil {
				sc.onOff(err)
			}
		}
		return cutToPion
	}
	sc.proven.Store(true)
	sc.misses = 0
	_, _ = rb.Write(out)
	return cutForwarded
}

// shortcutLeg keeps a leg's shortcut pointed at the remote address of
// its selected ICE pair, once it is connected. The shortcut (and so its
// SRTP context, with the streams' replay and rollover state) is made
// once per leg; a new pair only moves it.
func (r *Room) shortcutLeg(side int, l *leg) {
	cuts := r.sfu.cuts
	l.cutMu.Lock()
	defer l.cutMu.Unlock()
	if l.cutDone {
		return
	}
	if l.cut == nil {
		ctx, err := l.keys.remoteContext()
		if err != nil {
			// the client chose to be the DTLS server: pion forwards
			r.sfu.log.Debug("sfu shortcut not used", "room", r.code, "side", side, "err", err)
			l.cutDone = true
			return
		}
		l.cut = newShortcut(l, cuts.worker(), ctx, func(err error) {
			r.sfu.log.Warn("sfu shortcut off: its keys did not authenticate the media; pion forwards it", "room", r.code, "side", side, "err", err)
		})
	}
	pair, err := l.dtls.ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil || pair.Remote == nil || pair.Remote.Protocol != webrtc.ICEProtocolUDP {
		cuts.remove(l.cut) // ICE-TCP, or no pair: pion carries it all
		return
	}
	a, err := netip.ParseAddr(pair.Remote.Address)
	if err != nil {
		cuts.remove(l.cut)
		return
	}
	cuts.set(netip.AddrPortFrom(a.Unmap(), pair.Remote.Port), l.cut)
}

// unshortcutLeg takes the leg out of the table for good.
func (r *Room) unshortcutLeg(l *leg) {
	l.cutMu.Lock()
	defer l.cutMu.Unlock()
	l.cutDone = true
	if l.cut != nil {
		r.sfu.cuts.remove(l.cut)
	}
}
