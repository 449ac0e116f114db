// Package connlimit caps concurrent stream connections per address block
// and in total. Without a cap one host could hold every descriptor the
// process has; with a per-address cap keyed by addrkey, one subscriber's
// whole IPv6 /64 counts as one address.
package connlimit

import (
	"net"
	"net/netip"
	"sync"

	"github.com/duetchat/duet/internal/addrkey"
)

// Key is the address block a connection counts against.
type Key = netip.Prefix

// Reasons a connection is refused; also metric label values.
const (
	PerAddress = "per_address_cap"
	Total      = "total_cap"
)

// Guard counts live connections.
type Guard struct {
	keyer   addrkey.Keyer
	perAddr int // 0 = no cap
	total   int // 0 = no cap

	mu     sync.Mutex
	byAddr map[Key]int
	live   int
}

// New caps connections at perAddr per address block and total in all
// (0 = no cap).
func New(keyer addrkey.Keyer, perAddr, total int) *Guard {
	return &Guard{keyer: keyer, perAddr: perAddr, total: total, byAddr: map[Key]int{}}
}

// Admit counts a new connection from a, or names the cap it is over
// (then nothing is counted).
func (g *Guard) Admit(a net.Addr) (Key, string) {
	var key Key
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			key = g.keyer.Prefix(ip)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.total > 0 && g.live >= g.total {
		return key, Total
	}
	if g.perAddr > 0 && g.byAddr[key] >= g.perAddr {
		return key, PerAddress
	}
	g.live++
	g.byAddr[key]++
	return key, ""
}

// Release uncounts a connection Admit counted.
func (g *Guard) Release(key Key) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.live--
	if g.byAddr[key] <= 1 {
		delete(g.byAddr, key)
	} else {
		g.byAddr[key]--
	}
}

// Count is how many connections are live.
func (g *Guard) Count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.live
}
