package turn

import (
	"fmt"
	"net"
	"net/netip"
)

// defaultDenied are the peer ranges a public relay must never reach: a
// TURN server that relays into them is an SSRF hole into its own network.
var defaultDenied = []string{
	"0.0.0.0/8",          // "this network", includes the unspecified address
	"10.0.0.0/8",         // private
	"100.64.0.0/10",      // carrier-grade NAT
	"127.0.0.0/8",        // loopback
	"169.254.0.0/16",     // link-local (cloud metadata lives here)
	"172.16.0.0/12",      // private
	"192.0.0.0/24",       // IETF protocol assignments
	"192.168.0.0/16",     // private
	"198.18.0.0/15",      // benchmarking
	"224.0.0.0/4",        // multicast
	"240.0.0.0/4",        // reserved, includes broadcast
	"::/128",             // unspecified
	"::1/128",            // loopback
	"64:ff9b::/96",       // well-known NAT64: wraps any IPv4 address (64:ff9b::7f00:1 is 127.0.0.1)
	"64:ff9b:1::/48",     // local-use NAT64
	"fc00::/7",           // unique local
	"fe80::/10",          // link-local
	"ff00::/8",           // multicast
	"2001:db8::/32",      // documentation, never routed
	"::/96",              // deprecated IPv4-compatible
	"2002::/16",          // 6to4 can wrap any IPv4 address
	"2001::/32",          // Teredo likewise
	"100::/64",           // discard-only
	"fec0::/10",          // deprecated site-local
	"255.255.255.255/32", // broadcast (inside 240/4; listed for the reader)
}

// PeerPolicy decides which peer addresses a TURN client may send to.
// Denied wins over allowed; allowed re-opens ranges of the default list.
type PeerPolicy struct {
	allowed []netip.Prefix
	denied  []netip.Prefix // operator's list
	builtin []netip.Prefix
}

// NewPeerPolicy builds a policy from CIDR lists (turn.allowed_peer_cidrs,
// turn.denied_peer_cidrs). Bare addresses count as single hosts.
func NewPeerPolicy(allowed, denied []string) (*PeerPolicy, error) {
	p := &PeerPolicy{}
	var err error
	if p.allowed, err = parsePrefixes("turn.allowed_peer_cidrs", allowed); err != nil {
		return nil, err
	}
	if p.denied, err = parsePrefixes("turn.denied_peer_cidrs", denied); err != nil {
		return nil, err
	}
	if p.builtin, err = parsePrefixes("built-in denied ranges", defaultDenied); err != nil {
		return nil, err
	}
	return p, nil
}

func parsePrefixes(what string, list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			addr, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("%s: %q is not a CIDR or address: %w", what, s, err)
			}
			pfx = netip.PrefixFrom(addr, addr.BitLen())
		}
		out = append(out, unmapPrefix(pfx.Masked()))
	}
	return out, nil
}

// unmapPrefix turns ::ffff:a.b.c.d/N (N >= 96) into a.b.c.d/(N-96) so an
// operator's mapped-form entry matches the IPv4 address it stands for.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

func contains(list []netip.Prefix, a netip.Addr) bool {
	for _, p := range list {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Allowed reports whether a client may relay to ip. IPv4-mapped IPv6
// addresses are judged as the IPv4 address they carry, so ::ffff:10.0.0.1
// is as private as 10.0.0.1.
func (p *PeerPolicy) Allowed(ip net.IP) bool {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	return p.AllowedAddr(a)
}

// AllowedAddr is Allowed for a netip.Addr.
func (p *PeerPolicy) AllowedAddr(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	if !a.IsValid() {
		return false
	}
	if contains(p.denied, a) {
		return false
	}
	if contains(p.allowed, a) {
		return true
	}
	return !contains(p.builtin, a)
}
