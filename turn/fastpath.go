package turn

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetchat/duet/internal/udpbatch"
)

// fastPath relays ChannelData of UDP allocations without pion/turn's
// per-datagram work. pion runs a goroutine per allocation that is woken
// for every datagram its relay socket receives and encodes every
// ChannelData into a fresh buffer; here relay sockets are read by a few
// shared pollers (relaypoll_linux.go) that frame a bound peer's datagram
// in place and queue it on a listener socket, and a client's ChannelData
// goes from the listener's read loop straight to the relay socket.
//
// What it may relay is learned from pion itself: OnChannelCreated fires
// only after pion granted the binding (and with it the permission, which
// asks the peer policy), OnChannelDeleted when the binding lapses or its
// allocation closes. Anything the fast path does not know is handed to
// pion unchanged: a datagram from a peer with no channel (pion sends a
// Data indication if a permission allows it, else drops it), ChannelData
// on a number that is not bound, every STUN message. Both directions go
// through countingConn, so the per-room figures and the refusal of the
// node's own addresses are the same as on pion's path. TCP and TLS
// allocations stay on pion's path entirely.
type fastPath struct {
	policy *PeerPolicy
	out    []*udpbatch.Conn // listener sockets ChannelData to clients leaves on
	polls  []*relayPoller   // nil on platforms without a poller
	nextID atomic.Uint32
	// Datagrams carried, for tests and the metrics: what pion never saw.
	toClient, toPeer atomic.Uint64

	mu       sync.RWMutex
	byRelay  map[string]*fastConn
	byClient map[netip.AddrPort]*fastConn
}

// fastConn is one UDP allocation on the fast path.
type fastConn struct {
	c      *countingConn
	f      *fastPath
	id     uint32
	client netip.AddrPort
	poll   *relayPoller
	raw    syscall.RawConn           // set by poll.add
	chans  atomic.Pointer[[]binding] // copy on write; read per datagram
	mu     sync.Mutex                // serialises writers of chans (binds, lapses)
	// slow carries what pion must judge (no channel bound) to its
	// allocation goroutine, blocked in countingConn.ReadFrom.
	slow    chan slowDatagram
	done    chan struct{}
	removed sync.Once
}

// binding is one channel bound on an allocation.
type binding struct {
	num  uint16
	peer netip.AddrPort
	addr *net.UDPAddr // peer, as countingConn.WriteTo wants it
}

type slowDatagram struct {
	b    []byte
	from net.Addr
}

// slowQueue bounds what waits for pion's goroutine; past it datagrams
// are dropped, as a full socket buffer would.
const slowQueue = 64

func newFastPath(policy *PeerPolicy, out []*udpbatch.Conn, pollers int) *fastPath {
	f := &fastPath{policy: policy, out: out, byRelay: map[string]*fastConn{}, byClient: map[netip.AddrPort]*fastConn{}}
	if len(out) == 0 {
		return f
	}
	for i := range pollers {
		p, err := newRelayPoller(out[i%len(out)])
		if err != nil {
			f.close()
			f.polls = nil
			return f
		}
		f.polls = append(f.polls, p)
	}
	return f
}

// register exports what the fast path carried, so an operator can see
// how much of the relayed traffic skipped pion.
func (f *fastPath) register(reg prometheus.Registerer) error {
	for dir, n := range map[string]*atomic.Uint64{"to_peer": &f.toPeer, "to_client": &f.toClient} {
		c := prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "duet_turn_fastpath_packets_total",
			Help:        "ChannelData of UDP allocations relayed without pion/turn's per-datagram path, by direction (to_peer: from clients; to_client: from peers).",
			ConstLabels: prometheus.Labels{"direction": dir},
		}, func() float64 { return float64(n.Load()) })
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("registering TURN fast path metrics: %w", err)
		}
	}
	return nil
}

func (f *fastPath) close() {
	for _, p := range f.polls {
		p.close()
	}
}

// add puts a freshly created UDP allocation on the fast path. pion
// starts the allocation's read goroutine only after OnAllocationCreated
// returns, so its first ReadFrom already sees c.fast.
func (f *fastPath) add(c *countingConn, client net.Addr) {
	ua, ok := client.(*net.UDPAddr)
	if f == nil || len(f.polls) == 0 || c == nil || c.udp == nil || !ok {
		return
	}
	id := f.nextID.Add(1)
	if id == noID {
		id = f.nextID.Add(1)
	}
	fc := &fastConn{
		c: c, f: f, id: id, client: unmap(ua.AddrPort()),
		poll: f.polls[int(id)%len(f.polls)],
		slow: make(chan slowDatagram, slowQueue), done: make(chan struct{}),
	}
	fc.chans.Store(&[]binding{})
	f.mu.Lock()
	f.byRelay[c.a.key] = fc
	f.byClient[fc.client] = fc
	f.mu.Unlock()
	if err := fc.poll.add(fc); err != nil {
		f.mu.Lock()
		delete(f.byRelay, c.a.key)
		delete(f.byClient, fc.client)
		f.mu.Unlock()
		return
	}
	c.fast.Store(fc)
}

// remove takes an allocation off the fast path before its socket closes.
func (f *fastPath) remove(fc *fastConn) {
	fc.removed.Do(func() { f.removeOnce(fc) })
}

func (f *fastPath) removeOnce(fc *fastConn) {
	f.mu.Lock()
	if f.byRelay[fc.c.a.key] == fc {
		delete(f.byRelay, fc.c.a.key)
	}
	if f.byClient[fc.client] == fc {
		delete(f.byClient, fc.client)
	}
	f.mu.Unlock()
	fc.poll.remove(fc)
	close(fc.done)
}

// channelCreated mirrors a binding pion granted.
func (f *fastPath) channelCreated(_, _ net.Addr, _, _, _ string, relay, peer net.Addr, num uint16) {
	pa, ok := peer.(*net.UDPAddr)
	// pion asked the policy before granting; asking again keeps the
	// fast path from ever carrying what the policy forbids.
	if !ok || !f.policy.Allowed(pa.IP) {
		return
	}
	f.mu.RLock()
	fc := f.byRelay[relay.String()]
	f.mu.RUnlock()
	if fc == nil {
		return
	}
	b := binding{num: num, peer: unmap(pa.AddrPort()), addr: &net.UDPAddr{IP: pa.IP, Port: pa.Port}}
	fc.update(func(old []binding) []binding {
		out := make([]binding, 0, len(old)+1)
		for _, o := range old {
			if o.num != num && o.peer != b.peer {
				out = append(out, o)
			}
		}
		return append(out, b)
	})
}

// channelDeleted forgets a binding that lapsed or whose allocation closed.
func (f *fastPath) channelDeleted(_, _ net.Addr, _, _, _ string, relay, _ net.Addr, num uint16) {
	f.mu.RLock()
	fc := f.byRelay[relay.String()]
	f.mu.RUnlock()
	if fc == nil {
		return
	}
	fc.update(func(old []binding) []binding {
		out := make([]binding, 0, len(old))
		for _, o := range old {
			if o.num != num {
				out = append(out, o)
			}
		}
		return out
	})
}

func (fc *fastConn) update(fn func([]binding) []binding) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	next := fn(*fc.chans.Load())
	fc.chans.Store(&next)
}

func (fc *fastConn) byPeer(p netip.AddrPort) *binding {
	bs := *fc.chans.Load()
	for i := range bs {
		if bs[i].peer == p {
			return &bs[i]
		}
	}
	return nil
}

func (fc *fastConn) byNumber(n uint16) *binding {
	bs := *fc.chans.Load()
	for i := range bs {
		if bs[i].num == n {
			return &bs[i]
		}
	}
	return nil
}

// fromPeer takes one datagram the poller read into buf[chanHeader:][:n]:
// when its peer has a channel it frames it in place and reports true
// (the poller sends buf[:chanHeader+n] to fc.client), else it hands it
// to pion's goroutine.
func (fc *fastConn) fromPeer(buf []byte, n int, from netip.AddrPort) bool {
	if b := fc.byPeer(from); b != nil && !fc.c.cut.Load() {
		fc.c.a.fromPeer.add(n)
		putChannelHeader(buf, b.num, n)
		fc.f.toClient.Add(1)
		return true
	}
	// No permission, no relaying: dropped before it costs a copy and a
	// hand-off to pion, which would only drop it too.
	if !fc.c.permitted(from.Addr()) {
		fc.c.fromUnpermitted()
		return false
	}
	fc.c.a.fromPeer.add(n)
	d := slowDatagram{b: append([]byte(nil), buf[chanHeader:chanHeader+n]...), from: fc.c.peers.Get(from)}
	select {
	case fc.slow <- d:
	default:
	}
	return false
}

// relayBuf holds one datagram behind room for the ChannelData header;
// sized like the listener's batch slots.
const relayBuf = 2048

// chanHeader is ChannelData's channel number and length. Over UDP the
// data needs no padding (RFC 8656 §12.5).
const chanHeader = 4

func putChannelHeader(buf []byte, num uint16, n int) {
	binary.BigEndian.PutUint16(buf[0:2], num)
	binary.BigEndian.PutUint16(buf[2:4], uint16(n)) //nolint:gosec // n fits a datagram
}

// fromClient relays b, read on a UDP listener from src, when it is
// ChannelData on a channel the fast path knows; false leaves it to pion.
func (f *fastPath) fromClient(b []byte, src net.Addr, send *rawSender) bool {
	num, data, ok := parseChannelData(b)
	if !ok {
		return false
	}
	ua, ok := src.(*net.UDPAddr)
	if !ok {
		return false
	}
	f.mu.RLock()
	fc := f.byClient[unmap(ua.AddrPort())]
	f.mu.RUnlock()
	if fc == nil {
		return false
	}
	bnd := fc.byNumber(num)
	if bnd == nil {
		return false
	}
	switch c := fc.c; {
	case c.cut.Load(), c.refused(bnd.addr):
	case send.write(fc, data, bnd.peer):
		c.a.toPeer.add(len(data))
	default:
		_, _ = c.WriteTo(data, bnd.addr)
	}
	f.toPeer.Add(1)
	return true
}

// parseChannelData accepts what pion would: a channel number in
// 0x4000-0x7FFF and a length that fits the datagram (padding after it is
// allowed).
func parseChannelData(b []byte) (num uint16, data []byte, ok bool) {
	if len(b) < chanHeader {
		return 0, nil, false
	}
	num = binary.BigEndian.Uint16(b[0:2])
	l := int(binary.BigEndian.Uint16(b[2:4]))
	if num < 0x4000 || num > 0x7FFF || chanHeader+l > len(b) {
		return 0, nil, false
	}
	return num, b[chanHeader : chanHeader+l], true
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
