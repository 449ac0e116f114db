package turn

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duetchat/duet/internal/udpbatch"
)

// flow counts one direction of one allocation. Only atomics are touched
// per packet.
type flow struct{ bytes, packets atomic.Uint64 }

func (f *flow) add(n int) {
	f.bytes.Add(uint64(n))
	f.packets.Add(1)
}

// Totals are bytes and packets in one direction.
type Totals struct{ Bytes, Packets uint64 }

func (t Totals) plus(o Totals) Totals { return Totals{t.Bytes + o.Bytes, t.Packets + o.Packets} }

func (f *flow) load() Totals { return Totals{f.bytes.Load(), f.packets.Load()} }

// alloc is one live allocation: what its relay socket sent to peers and
// received from them.
type alloc struct {
	key       string // relay address
	user      Username
	ipKey     string // the client's address key, for the per-address quota
	transport string
	created   time.Time
	toPeer    flow // client -> peer (relay socket writes)
	fromPeer  flow // peer -> client (relay socket reads)
	sess      *sessionAcc
	conn      *countingConn // its relay socket, cut when its room ends
}

// sessionAcc is one stranger's relaying within a room: its live
// allocations plus what closed ones relayed.
type sessionAcc struct {
	live                 map[*alloc]struct{}
	closedTo, closedFrom Totals
	samples              [sampleSlots]sample
	next, filled         int
}

// sample is a session's cumulative totals at one tick.
type sample struct {
	at       time.Time
	to, from Totals
}

const sampleSlots = 6 // one per second: rates over the last ~5 s

func (s *sessionAcc) totals() (to, from Totals) {
	to, from = s.closedTo, s.closedFrom
	for a := range s.live {
		to, from = to.plus(a.toPeer.load()), from.plus(a.fromPeer.load())
	}
	return to, from
}

func (s *sessionAcc) record(now time.Time) {
	to, from := s.totals()
	s.samples[s.next] = sample{at: now, to: to, from: from}
	s.next = (s.next + 1) % sampleSlots
	s.filled = min(s.filled+1, sampleSlots)
}

// oldest and newest samples, when there are two.
func (s *sessionAcc) window() (old, cur sample, ok bool) {
	if s.filled < 2 {
		return sample{}, sample{}, false
	}
	cur = s.samples[(s.next+sampleSlots-1)%sampleSlots]
	old = s.samples[(s.next+sampleSlots-s.filled)%sampleSlots]
	return old, cur, true
}

// accounting attributes relayed traffic to rooms and sessions and
// enforces allocation quotas. Rooms are keyed by the code in the TURN
// username, never exported as metric labels.
type accounting struct {
	now     func() time.Time
	perUser int
	perIP   int // 0 = no cap
	total   int
	onClose func(a *alloc, to, from Totals)
	// refuse drops a relayed datagram before it leaves (the node's own
	// addresses outside the relay ports); dropped counts them.
	refuse  func(net.Addr) bool
	dropped atomic.Uint64
	// unpermitted counts datagrams to relay sockets from peers without a
	// permission: never relayed, never in a room's figures.
	unpermitted atomic.Uint64
	// cuts counts allocations whose room ended while they lived.
	cuts atomic.Uint64

	mu       sync.Mutex
	relays   map[string]*countingConn          // relay address -> conn, while open (attributed once created)
	rooms    map[string]map[string]*sessionAcc // room -> session -> figures
	live     map[string]int                    // quota key or address key -> live allocations
	reserved map[string][]time.Time            // quota key or address key -> admitted, not yet created
	nlive    int
	closed   map[string][2]Totals // transport -> closed allocations' totals, to and from peers
	allocs   map[*alloc]struct{}
}

// reservationTTL bounds how long an admitted allocation may take to
// appear; pion creates it right after the quota check, so this only
// matters when creation fails.
const reservationTTL = 5 * time.Second

func newAccounting(now func() time.Time, perUser, perIP, total int) *accounting {
	return &accounting{
		now: now, perUser: perUser, perIP: perIP, total: total,
		relays: map[string]*countingConn{}, rooms: map[string]map[string]*sessionAcc{},
		live: map[string]int{}, reserved: map[string][]time.Time{}, allocs: map[*alloc]struct{}{},
		closed: map[string][2]Totals{},
	}
}

// admit is the quota check: per session (or whole username), per client
// address and per node. Sessions are cheap, so the per-session quota alone
// would let one address hold the node's capacity; the address key (an
// IPv6 /64) closes that. It reserves a slot so concurrent requests on
// different sockets cannot all pass.
func (ac *accounting) admit(u Username, ipKey string) (ok bool, reason string) {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	now := ac.now()
	pending := ac.pruneReservations(now)
	key, addr := u.QuotaKey(), addrQuotaKey(ipKey)
	switch {
	case ac.live[key]+len(ac.reserved[key]) >= ac.perUser:
		return false, "user"
	case ac.perIP > 0 && ac.live[addr]+len(ac.reserved[addr]) >= ac.perIP:
		return false, "address"
	case ac.total > 0 && ac.nlive+pending >= ac.total:
		return false, "total"
	}
	ac.reserved[key] = append(ac.reserved[key], now)
	ac.reserved[addr] = append(ac.reserved[addr], now)
	return true, ""
}

// addrQuotaKey files an address apart from session and username keys.
func addrQuotaKey(ipKey string) string { return "a:" + ipKey }

// pruneReservations forgets admissions that never became allocations and
// returns how many are still pending. Under ac.mu.
func (ac *accounting) pruneReservations(now time.Time) int {
	pending := 0
	for key, list := range ac.reserved {
		kept := list[:0]
		for _, t := range list {
			if now.Sub(t) < reservationTTL {
				kept = append(kept, t)
			}
		}
		if len(kept) == 0 {
			delete(ac.reserved, key)
			continue
		}
		ac.reserved[key] = kept
		if !strings.HasPrefix(key, "a:") { // each admission is filed twice
			pending += len(kept)
		}
	}
	return pending
}

// wrap starts counting a freshly allocated relay socket.
func (ac *accounting) wrap(pc net.PacketConn, relay net.Addr) *countingConn {
	c := &countingConn{PacketConn: pc, ac: ac, a: &alloc{key: relay.String()}}
	c.a.conn = c
	if u, ok := pc.(*net.UDPConn); ok {
		c.udp, c.peers = u, udpbatch.NewAddrCache(8)
	}
	ac.mu.Lock()
	ac.relays[c.a.key] = c
	ac.mu.Unlock()
	return c
}

// permission mirrors one of pion's permission events onto the relay
// socket it is for.
func (ac *accounting) permission(relay net.Addr, peer net.IP, on bool) {
	ip, ok := netip.AddrFromSlice(peer)
	if !ok || relay == nil {
		return
	}
	ac.mu.Lock()
	c := ac.relays[relay.String()]
	ac.mu.Unlock()
	if c != nil {
		c.setPermission(ip, on)
	}
}

// created attributes the allocation at relay to its username and the
// client address it was requested from.
func (ac *accounting) created(relay net.Addr, u Username, ipKey, transport string) *countingConn {
	ac.mu.Lock()
	c := ac.relays[relay.String()]
	if c == nil || c.attributed.Load() {
		ac.mu.Unlock()
		return nil
	}
	c.attributed.Store(true)
	a := c.a
	a.user, a.ipKey, a.transport, a.created = u, ipKey, transport, ac.now()
	for _, key := range []string{u.QuotaKey(), addrQuotaKey(ipKey)} {
		if r := ac.reserved[key]; len(r) > 0 {
			ac.reserved[key] = r[1:]
		}
		if len(ac.reserved[key]) == 0 {
			delete(ac.reserved, key)
		}
		ac.live[key]++
	}
	ac.nlive++
	ac.allocs[a] = struct{}{}
	if u.Room != "" {
		sessions := ac.rooms[u.Room]
		if sessions == nil {
			sessions = map[string]*sessionAcc{}
			ac.rooms[u.Room] = sessions
		}
		s := sessions[u.Session]
		if s == nil {
			s = &sessionAcc{live: map[*alloc]struct{}{}}
			sessions[u.Session] = s
		}
		s.live[a] = struct{}{}
		a.sess = s
	}
	ac.mu.Unlock()
	return c
}

// closedConn folds a finished allocation into its session and the node
// totals, and forgets rooms with nothing left.
func (ac *accounting) closedConn(c *countingConn) {
	a := c.a
	to, from := a.toPeer.load(), a.fromPeer.load()
	ac.mu.Lock()
	delete(ac.relays, a.key)
	if !c.attributed.Load() {
		ac.mu.Unlock()
		return
	}
	delete(ac.allocs, a)
	for _, key := range []string{a.user.QuotaKey(), addrQuotaKey(a.ipKey)} {
		if ac.live[key]--; ac.live[key] <= 0 {
			delete(ac.live, key)
		}
	}
	ac.nlive--
	c2 := ac.closed[a.transport]
	ac.closed[a.transport] = [2]Totals{c2[0].plus(to), c2[1].plus(from)}
	if s := a.sess; s != nil {
		delete(s.live, a)
		s.closedTo, s.closedFrom = s.closedTo.plus(to), s.closedFrom.plus(from)
		sessions := ac.rooms[a.user.Room]
		empty := true
		for _, o := range sessions {
			if len(o.live) > 0 {
				empty = false
			}
		}
		if empty {
			delete(ac.rooms, a.user.Room)
		}
	}
	ac.mu.Unlock()
	if ac.onClose != nil {
		ac.onClose(a, to, from)
	}
}

// cutRoom stops every live allocation of room from relaying, either
// way, and returns how many. The allocations themselves stay with pion
// until their lifetime runs out (their refreshes are refused): closing a
// relay socket makes pion close the allocation on that socket's reader
// goroutine, and pion's Close reads a permission's timer that its
// request goroutine may still be setting (a data race, and a nil timer
// when a CreatePermission is in flight).
func (ac *accounting) cutRoom(room string) int {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	n := 0
	for _, s := range ac.rooms[room] {
		for a := range s.live {
			if a.conn.cut.CompareAndSwap(false, true) {
				n++
			}
		}
	}
	ac.cuts.Add(uint64(n))
	return n
}

// tick samples every session for the rate window.
func (ac *accounting) tick() {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	now := ac.now()
	for _, sessions := range ac.rooms {
		for _, s := range sessions {
			s.record(now)
		}
	}
}

// nodeTotals sums every allocation, live and closed, by transport.
func (ac *accounting) nodeTotals() (allocs map[string]int, to, from map[string]Totals) {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	allocs, to, from = map[string]int{}, map[string]Totals{}, map[string]Totals{}
	for tr, c := range ac.closed {
		to[tr], from[tr] = c[0], c[1]
	}
	for a := range ac.allocs {
		allocs[a.transport]++
		to[a.transport] = to[a.transport].plus(a.toPeer.load())
		from[a.transport] = from[a.transport].plus(a.fromPeer.load())
	}
	return allocs, to, from
}

// countingConn is a relay socket that counts what it relays.
type countingConn struct {
	net.PacketConn
	ac         *accounting
	a          *alloc
	attributed atomic.Bool
	closeOnce  sync.Once
	// udp is the socket when it is a *net.UDPConn: its reads return the
	// peer's address from peers, one per peer, instead of a fresh
	// *net.UDPAddr per datagram (pion only compares and prints it).
	udp   *net.UDPConn
	peers *udpbatch.AddrCache
	// fast is set when a UDP allocation's relay socket is read by the
	// fast path's poller (fastpath.go); pion's goroutine then gets only
	// what the fast path leaves to it.
	fast atomic.Pointer[fastConn]
	// perms mirrors pion's permissions on this allocation (peer IPs,
	// unmapped), copied on write: a datagram from any other address is
	// dropped here, uncounted, as pion would drop it anyway.
	perms  atomic.Pointer[[]netip.Addr]
	permMu sync.Mutex
	// cut: the allocation's room has ended; nothing is relayed either
	// way any more (cutRoom).
	cut atomic.Bool
}

// setPermission adds or removes ip from c's permitted peers.
func (c *countingConn) setPermission(ip netip.Addr, on bool) {
	ip = ip.Unmap()
	c.permMu.Lock()
	defer c.permMu.Unlock()
	var old []netip.Addr
	if p := c.perms.Load(); p != nil {
		old = *p
	}
	next := make([]netip.Addr, 0, len(old)+1)
	for _, a := range old {
		if a != ip {
			next = append(next, a)
		}
	}
	if on {
		next = append(next, ip)
	}
	c.perms.Store(&next)
}

// permitted: ip has a permission on c (a handful at most: a scan), and
// c has not been cut.
func (c *countingConn) permitted(ip netip.Addr) bool {
	p := c.perms.Load()
	if p == nil || c.cut.Load() {
		return false
	}
	ip = ip.Unmap()
	for _, a := range *p {
		if a == ip {
			return true
		}
	}
	return false
}

// fromUnpermitted counts a datagram dropped for want of a permission.
func (c *countingConn) fromUnpermitted() { c.ac.unpermitted.Add(1) }

func (c *countingConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if fc := c.fast.Load(); fc != nil {
		select {
		case d := <-fc.slow:
			return copy(p, d.b), d.from, nil
		case <-fc.done:
			return 0, nil, net.ErrClosed
		}
	}
	for {
		var (
			n    int
			ap   netip.AddrPort
			addr net.Addr
			err  error
		)
		if c.udp != nil {
			if n, ap, err = c.udp.ReadFromUDPAddrPort(p); err == nil {
				addr = c.peers.Get(ap)
			}
		} else if n, addr, err = c.PacketConn.ReadFrom(p); err == nil {
			ap, _ = netip.ParseAddrPort(addr.String())
		}
		if err != nil {
			return n, addr, err
		}
		if !c.permitted(ap.Addr()) {
			c.fromUnpermitted()
			continue
		}
		c.a.fromPeer.add(n)
		return n, addr, nil
	}
}

func (c *countingConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if c.cut.Load() || c.refused(addr) {
		return len(p), nil
	}
	n, err := c.PacketConn.WriteTo(p, addr)
	if n > 0 {
		c.a.toPeer.add(n)
	}
	return n, err
}

// refused drops what is addressed to the node itself (outside the relay
// ports) as a firewall would: the client learns nothing it could probe
// with.
func (c *countingConn) refused(addr net.Addr) bool {
	if c.ac.refuse != nil && c.ac.refuse(addr) {
		c.ac.dropped.Add(1)
		return true
	}
	return false
}

func (c *countingConn) Close() error {
	if fc := c.fast.Load(); fc != nil {
		fc.f.remove(fc)
	}
	err := c.PacketConn.Close()
	c.closeOnce.Do(func() { c.ac.closedConn(c) })
	return err
}
