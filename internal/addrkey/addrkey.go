// Package addrkey turns a client address into the key per-address limits,
// quotas and bans count against. An IPv4 address is its own key; an IPv6
// address is keyed by its prefix (a /64 by default), because one
// subscriber is routinely handed a whole /64 and can pick a fresh address
// from it for every socket.
package addrkey

import (
	"fmt"
	"net/netip"
)

// DefaultV6Bits is the IPv6 prefix length one subscriber is assumed to hold.
const DefaultV6Bits = 64

// Keyer keys addresses with a fixed IPv6 prefix length.
type Keyer struct{ v6Bits int }

// New returns a Keyer for IPv6 prefixes of bits (1..128; 0 means the default).
func New(bits int) (Keyer, error) {
	if bits == 0 {
		bits = DefaultV6Bits
	}
	if bits < 1 || bits > 128 {
		return Keyer{}, fmt.Errorf("IPv6 prefix length %d: want 1 to 128", bits)
	}
	return Keyer{v6Bits: bits}, nil
}

// Prefix is the block a is counted in: the address itself for IPv4
// (IPv4-mapped IPv6 included), its v6Bits prefix for IPv6. Zones are
// dropped. An invalid address gives an invalid prefix.
func (k Keyer) Prefix(a netip.Addr) netip.Prefix {
	a = a.Unmap().WithZone("")
	if !a.IsValid() {
		return netip.Prefix{}
	}
	bits := k.v6Bits
	if bits == 0 {
		bits = DefaultV6Bits
	}
	if a.Is4() {
		bits = 32
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}

// Key is Prefix as a string: "192.0.2.1" for IPv4, "2001:db8:1:2::/64"
// for IPv6. Strings that are not addresses are returned unchanged, so a
// caller holding an unparsable peer still gets a stable key.
func (k Keyer) Key(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	p := k.Prefix(a)
	if p.Addr().Is4() {
		return p.Addr().String()
	}
	return p.String()
}
