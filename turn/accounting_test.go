package turn

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// An admission whose allocation never appeared stops counting against
// either quota once its reservation lapses, and is forgotten.
func TestAdmitForgetsLapsedReservations(t *testing.T) {
	now := time.Unix(1800000000, 0)
	ac := newAccounting(func() time.Time { return now }, 1, 0, 1)
	a := Username{Expiry: now.Add(time.Hour), User: "a"}
	b := Username{Expiry: now.Add(time.Hour), User: "b"}
	tests := []struct {
		name    string
		advance time.Duration
		u       Username
		ok      bool
		reason  string
	}{
		{"first admission", 0, a, true, ""},
		{"same user while it is pending", time.Second, a, false, "user"},
		{"node cap while it is pending", 0, b, false, "total"},
		{"after the reservation lapsed", reservationTTL, b, true, ""},
		{"the lapsed user again", 0, a, false, "total"},
	}
	for _, tt := range tests {
		now = now.Add(tt.advance)
		ok, reason := ac.admit(tt.u, "192.0.2.1/32")
		if ok != tt.ok || reason != tt.reason {
			t.Fatalf("%s: admit = %v %q, want %v %q", tt.name, ok, reason, tt.ok, tt.reason)
		}
	}
	if _, kept := ac.reserved[a.QuotaKey()]; kept {
		t.Error("the lapsed reservation is still held")
	}
}

// One address holds at most perIP allocations whatever sessions it uses;
// another address is not held back by it, and closing frees the slot.
func TestAdmitCapsOneAddress(t *testing.T) {
	now := time.Unix(1800000000, 0)
	ac := newAccounting(func() time.Time { return now }, 8, 3, 0)
	session := func(i int) Username {
		return Username{Expiry: now.Add(time.Hour), Room: "r" + strconv.Itoa(i), Session: "s" + strconv.Itoa(i)}
	}
	const attacker, other = "2001:db8:1:2::/64", "192.0.2.9/32"
	var conns []*countingConn
	for i := 0; i < 3; i++ {
		ok, reason := ac.admit(session(i), attacker)
		if !ok {
			t.Fatalf("session %d refused (%s) under the address quota", i, reason)
		}
		relay := &net.UDPAddr{IP: net.IPv4(203, 0, 113, 1), Port: 50000 + i}
		c := ac.wrap(nopPacketConn{}, relay)
		ac.created(relay, session(i), attacker, "udp")
		conns = append(conns, c)
	}
	for _, tt := range []struct {
		name   string
		u      Username
		key    string
		ok     bool
		reason string
	}{
		{"a fourth session of the same address", session(3), attacker, false, "address"},
		{"a session of another address", session(4), other, true, ""},
	} {
		if ok, reason := ac.admit(tt.u, tt.key); ok != tt.ok || reason != tt.reason {
			t.Errorf("%s: admit = %v %q, want %v %q", tt.name, ok, reason, tt.ok, tt.reason)
		}
	}
	_ = conns[0].Close()
	if ok, reason := ac.admit(session(5), attacker); !ok {
		t.Errorf("after one allocation closed the address is still refused (%s)", reason)
	}
}

// The node's own addresses are reachable only inside the relay ports,
// unless the operator allowed the address on purpose.
func TestOwnAddressesRefusedOutsideRelayPorts(t *testing.T) {
	relay := net.IPv4(203, 0, 113, 7)
	allowed, err := parsePrefixes("test", []string{"198.51.100.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	o := newOwnAddrs(relay, 49152, 65535, allowed)
	o.addrs[netip.MustParseAddr("198.51.100.3")] = struct{}{} // an interface the operator opened
	for _, tt := range []struct {
		addr    string
		refused bool
	}{
		{"203.0.113.7:8443", true},        // the SFU's port on the public address
		{"203.0.113.7:3478", true},        // the TURN port itself
		{"[::ffff:203.0.113.7]:53", true}, // mapped form of the same
		{"203.0.113.7:49152", false},      // a relay port: two strangers relaying through one node
		{"203.0.113.7:65535", false},      // top of the range
		{"0.0.0.0:8443", true},            // the unspecified address reaches the node too
		{"203.0.113.8:8443", false},       // someone else's address
		{"198.51.100.3:7000", false},      // own, but allowed by the operator
	} {
		ap := netip.MustParseAddrPort(tt.addr)
		if got := o.refused(net.UDPAddrFromAddrPort(ap)); got != tt.refused {
			t.Errorf("refused(%s) = %v, want %v", tt.addr, got, tt.refused)
		}
	}
}

type nopPacketConn struct{ net.PacketConn }

func (nopPacketConn) Close() error { return nil }

// A relay socket hands pion, and counts, only datagrams from peers that
// hold a permission, following pion's permission events as they come
// and go; the rest are dropped and counted as such.
func TestRelaySocketPassesOnlyPermittedPeers(t *testing.T) {
	ac := newAccounting(time.Now, 10, 0, 10)
	relay, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c := ac.wrap(relay, relay.LocalAddr())
	t.Cleanup(func() { _ = c.Close() })
	from := func(ip string) *net.UDPConn {
		u, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)}, relay.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = u.Close() })
		return u
	}
	peer, stranger := from("127.0.0.2"), from("127.0.0.3")
	send := func(u *net.UDPConn, msg string) {
		if _, err := u.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	read := func() string {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 100)
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return string(buf[:n])
	}
	ac.permission(relay.LocalAddr(), net.ParseIP("127.0.0.2"), true)
	steps := []struct {
		name  string
		sends func()
		want  string
	}{
		{"a stranger's datagrams are skipped", func() { send(stranger, "x"); send(stranger, "y"); send(peer, "p1") }, "p1"},
		{"a permission mapped to IPv6 counts", func() {
			ac.permission(relay.LocalAddr(), net.ParseIP("::ffff:127.0.0.3"), true)
			send(stranger, "s1")
		}, "s1"},
		{"a deleted permission stops its peer", func() {
			ac.permission(relay.LocalAddr(), net.ParseIP("127.0.0.3"), false)
			send(stranger, "z")
			send(peer, "p2")
		}, "p2"},
	}
	for _, st := range steps {
		st.sends()
		if got := read(); got != st.want {
			t.Fatalf("%s: read %q, want %q", st.name, got, st.want)
		}
	}
	if got := ac.unpermitted.Load(); got != 3 {
		t.Errorf("unpermitted drops = %d, want 3", got)
	}
	if got := c.a.fromPeer.load(); got.Packets != 3 || got.Bytes != 6 {
		t.Errorf("from peer = %+v, want 3 packets, 6 bytes", got)
	}
}
