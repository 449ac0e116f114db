package turn

import (
	"net"
	"net/netip"
)

// ownAddrs are the node's own addresses (every interface address and the
// advertised relay address). pion's permission check sees a peer's IP but
// not its port, and a client may legitimately relay to the node's own
// address inside the relay port range (both strangers relaying through
// one node). Anything else there is a service of the node's (the SFU, the
// TURN port itself, whatever listens on 0.0.0.0), so datagrams to it are
// dropped at the relay socket.
type ownAddrs struct {
	addrs            map[netip.Addr]struct{}
	minPort, maxPort int
	// allowed is the operator's turn.allowed_peer_cidrs: an address listed
	// there on purpose is reachable on every port.
	allowed []netip.Prefix
}

func newOwnAddrs(relay net.IP, minPort, maxPort int, allowed []netip.Prefix) *ownAddrs {
	o := &ownAddrs{addrs: map[netip.Addr]struct{}{}, minPort: minPort, maxPort: maxPort, allowed: allowed}
	if a, ok := netip.AddrFromSlice(relay); ok {
		o.addrs[a.Unmap()] = struct{}{}
	}
	if list, err := net.InterfaceAddrs(); err == nil {
		for _, ia := range list {
			if n, ok := ia.(*net.IPNet); ok {
				if a, ok := netip.AddrFromSlice(n.IP); ok {
					o.addrs[a.Unmap()] = struct{}{}
				}
			}
		}
	}
	return o
}

// refused reports whether a relayed datagram to addr must be dropped.
func (o *ownAddrs) refused(addr net.Addr) bool {
	u, ok := addr.(*net.UDPAddr)
	if !ok {
		return false
	}
	a, ok := netip.AddrFromSlice(u.IP)
	if !ok {
		return true
	}
	a = a.Unmap().WithZone("")
	if _, own := o.addrs[a]; !own && !a.IsUnspecified() {
		return false
	}
	if u.Port >= o.minPort && u.Port <= o.maxPort {
		return false
	}
	return !contains(o.allowed, a)
}
