package turn

import (
	"bytes"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/duetchat/duet/internal/testtool"
)

func TestParseChannelData(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		num  uint16
		data string
		ok   bool
	}{
		{"exact", []byte{0x40, 0x00, 0, 2, 'h', 'i'}, 0x4000, "hi", true},
		{"padded to 4", []byte{0x40, 0x01, 0, 2, 'h', 'i', 0, 0}, 0x4001, "hi", true},
		{"empty data", []byte{0x7f, 0xff, 0, 0}, 0x7fff, "", true},
		{"length past the datagram", []byte{0x40, 0x00, 0, 3, 'h', 'i'}, 0, "", false},
		{"number below the range", []byte{0x3f, 0xff, 0, 0}, 0, "", false},
		{"number above the range", []byte{0x80, 0x00, 0, 0}, 0, "", false},
		{"STUN header", []byte{0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42}, 0, "", false},
		{"short", []byte{0x40, 0x00, 0}, 0, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			num, data, ok := parseChannelData(tt.in)
			if ok != tt.ok || (ok && (num != tt.num || string(data) != tt.data)) {
				t.Fatalf("parseChannelData = %#x %q %v, want %#x %q %v", num, data, ok, tt.num, tt.data, tt.ok)
			}
		})
	}
}

func TestPutChannelHeaderRoundTrips(t *testing.T) {
	for _, n := range []int{0, 1, 170, 1500, relayBuf - chanHeader} {
		buf := make([]byte, relayBuf)
		for i := range n {
			buf[chanHeader+i] = byte(i)
		}
		putChannelHeader(buf, 0x4123, n)
		num, data, ok := parseChannelData(buf[:chanHeader+n])
		if !ok || num != 0x4123 || !bytes.Equal(data, buf[chanHeader:chanHeader+n]) {
			t.Fatalf("n=%d: parsed %#x, %d bytes, ok %v", n, num, len(data), ok)
		}
	}
}

// The tracker mirrors pion's ChannelBind events: what it holds is what
// the fast path may carry, so every event sequence is checked against the
// bindings that must remain.
func TestBindingTracker(t *testing.T) {
	const relay = "127.0.0.1:40000"
	peerA := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}
	peerB := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5001}
	private := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 5000}
	type event struct {
		created bool
		relay   string
		peer    *net.UDPAddr
		num     uint16
	}
	tests := []struct {
		name   string
		events []event
		want   map[uint16]*net.UDPAddr
	}{
		{"bound", []event{{true, relay, peerA, 0x4000}}, map[uint16]*net.UDPAddr{0x4000: peerA}},
		{"two channels", []event{{true, relay, peerA, 0x4000}, {true, relay, peerB, 0x4001}},
			map[uint16]*net.UDPAddr{0x4000: peerA, 0x4001: peerB}},
		{"refresh keeps one", []event{{true, relay, peerA, 0x4000}, {true, relay, peerA, 0x4000}},
			map[uint16]*net.UDPAddr{0x4000: peerA}},
		{"lapsed", []event{{true, relay, peerA, 0x4000}, {false, relay, peerA, 0x4000}}, map[uint16]*net.UDPAddr{}},
		{"lapse of another channel", []event{{true, relay, peerA, 0x4000}, {true, relay, peerB, 0x4001}, {false, relay, peerB, 0x4001}},
			map[uint16]*net.UDPAddr{0x4000: peerA}},
		{"peer the policy refuses", []event{{true, relay, private, 0x4000}}, map[uint16]*net.UDPAddr{}},
		{"another allocation's relay", []event{{true, "127.0.0.1:40001", peerA, 0x4000}}, map[uint16]*net.UDPAddr{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			policy, err := NewPeerPolicy([]string{"127.0.0.1/32"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			f := &fastPath{policy: policy, byRelay: map[string]*fastConn{}, byClient: map[netip.AddrPort]*fastConn{}}
			fc := &fastConn{f: f, c: &countingConn{a: &alloc{key: relay}}}
			fc.chans.Store(&[]binding{})
			f.byRelay[relay] = fc
			relayAddr := func(s string) net.Addr { return net.UDPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
			for _, e := range tt.events {
				if e.created {
					f.channelCreated(nil, nil, "UDP", "", "", relayAddr(e.relay), e.peer, e.num)
				} else {
					f.channelDeleted(nil, nil, "UDP", "", "", relayAddr(e.relay), e.peer, e.num)
				}
			}
			if got := len(*fc.chans.Load()); got != len(tt.want) {
				t.Fatalf("%d bindings, want %d", got, len(tt.want))
			}
			for num, peer := range tt.want {
				b := fc.byNumber(num)
				if b == nil || b.peer != unmap(peer.AddrPort()) {
					t.Fatalf("channel %#x: %v, want %v", num, b, peer)
				}
				if fc.byPeer(unmap(peer.AddrPort())) != b {
					t.Fatalf("peer %v does not map back to channel %#x", peer, num)
				}
			}
			for _, p := range []*net.UDPAddr{peerA, peerB, private} {
				if b := fc.byPeer(unmap(p.AddrPort())); b != nil && tt.want[b.num] == nil {
					t.Fatalf("peer %v still bound to %#x", p, b.num)
				}
			}
		})
	}
}

// waitChannel returns the fast path's entry for an allocation, once pion
// has told it of a channel to peer.
func waitChannel(t *testing.T, r *relay, c *pionClient, peer *net.UDPAddr) *fastConn {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		r.fast.mu.RLock()
		fc := r.fast.byRelay[c.relay.LocalAddr().String()]
		r.fast.mu.RUnlock()
		if fc != nil && fc.byPeer(unmap(peer.AddrPort())) != nil {
			return fc
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no channel to %v on the fast path", peer)
	return nil
}

// A datagram from an address with no permission never reaches the
// client, while a bound peer's do, through the fast path. The stranger's
// datagrams are sent before an end marker from a permitted (unbound)
// port: the relay socket's queue and the hand-off to pion are both in
// order, so once the marker arrives every stranger datagram was judged.
func TestFastPathCarriesOnlyPermittedPeers(t *testing.T) {
	r := startRelay(t, func(o *Options) { o.TURN.AllowedPeerCIDRs = []string{"127.0.0.1/32"} })
	c := mustAllocate(t, r, "room", "s")
	listen := func(ip string) *net.UDPConn {
		u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = u.Close() })
		return u
	}
	peer, marker, stranger := listen("127.0.0.1"), listen("127.0.0.1"), listen("127.0.0.2")
	peerAddr := peer.LocalAddr().(*net.UDPAddr)
	// pion's client asks for a permission and then binds a channel.
	for range 3 {
		if _, err := c.relay.WriteTo([]byte("hello"), peerAddr); err != nil {
			t.Fatal(err)
		}
	}
	waitChannel(t, r, c, peerAddr)
	relayAddr := c.relay.LocalAddr()
	before, unBefore := r.fast.toClient.Load(), r.acc.unpermitted.Load()
	const n = 50
	for range n {
		if _, err := stranger.WriteTo([]byte("stranger"), relayAddr); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		if _, err := peer.WriteTo([]byte("peer"), relayAddr); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := marker.WriteTo([]byte("end"), relayAddr); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	buf := make([]byte, 1500)
	for got["end"] == 0 {
		_ = c.relay.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, from, err := c.relay.ReadFrom(buf)
		if err != nil {
			t.Fatalf("reading the relay: %v (got %v)", err, got)
		}
		got[string(buf[:k])]++
		if string(buf[:k]) == "stranger" {
			t.Fatalf("a datagram from %v, which has no permission, reached the client", from)
		}
	}
	if got["peer"] == 0 {
		t.Fatalf("nothing from the bound peer arrived: %v", got)
	}
	// The stranger's were dropped at the relay socket (sent before the
	// marker, so all judged by now), not handed to pion.
	if d := r.acc.unpermitted.Load() - unBefore; d != n {
		t.Errorf("unpermitted drops went up by %d, want %d", d, n)
	}
	if carried := r.fast.toClient.Load() - before; carried < uint64(got["peer"]) {
		t.Errorf("fast path carried %d datagrams to the client, %d arrived from the bound peer", carried, got["peer"])
	}
}

// turnutils_uclient's channel mode goes over the fast path both ways,
// and the relay's figures count exactly what it carried.
func TestTurnutilsFastPathAccounting(t *testing.T) {
	r := startRelay(t, func(o *Options) { o.TURN.AllowedPeerCIDRs = []string{"127.0.0.1/32"} })
	peer := strconv.Itoa(testtool.StartTURNPeer(t))
	const msgs, size = 200, 170
	res := r.uclient(t, "-W", testSecret, "-e", "127.0.0.1", "-r", peer, "-n", strconv.Itoa(msgs), "-l", strconv.Itoa(size), "-z", "5", "-m", "1")
	requireLossFree(t, res)
	toPeer, toClient := r.fast.toPeer.Load(), r.fast.toClient.Load()
	if toPeer < msgs || toClient < msgs {
		t.Fatalf("fast path carried %d to the peer and %d to the client, want >= %d each", toPeer, toClient, msgs)
	}
	if got := r.gauge(t, "duet_turn_fastpath_packets_total", "to_client"); got != float64(toClient) {
		t.Errorf("duet_turn_fastpath_packets_total{to_client} = %v, want %d", got, toClient)
	}
	_, to, from := r.acc.nodeTotals()
	for _, c := range []struct {
		name    string
		tot     Totals
		carried uint64
	}{{"to_peer", to["udp"], toPeer}, {"from_peer", from["udp"], toClient}} {
		// pion relays only what came before the channel was bound.
		if c.tot.Packets < c.carried || c.tot.Packets > c.carried+10 {
			t.Errorf("%s: accounted %d packets, the fast path carried %d", c.name, c.tot.Packets, c.carried)
		}
		if c.tot.Bytes < c.carried*size {
			t.Errorf("%s: accounted %d bytes for %d packets of %d", c.name, c.tot.Bytes, c.carried, size)
		}
	}
}

// FuzzParseChannelData: whatever a client sends to a UDP listener, the
// fast path's parser never reads past the datagram, accepts only the
// channel range, and hands back exactly the length the header claims
// (so a wrapping or oversized length is refused, never sliced).
func FuzzParseChannelData(f *testing.F) {
	f.Add([]byte{0x40, 0x00, 0, 2, 'h', 'i'})
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff})
	f.Add([]byte{0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42})
	f.Fuzz(func(t *testing.T, b []byte) {
		num, data, ok := parseChannelData(b)
		if !ok {
			return
		}
		claimed := int(b[2])<<8 | int(b[3])
		if num < 0x4000 || num > 0x7fff || len(data) != claimed || chanHeader+claimed > len(b) ||
			!bytes.Equal(data, b[chanHeader:chanHeader+claimed]) {
			t.Fatalf("parseChannelData(%x) = %#x, %d bytes, ok", b, num, len(data))
		}
	})
}
