package udpbatch

import (
	"net"
	"net/netip"
	"sync/atomic"
)

// AddrCache hands out one *net.UDPAddr per address seen lately, so that
// net.PacketConn's ReadFrom, whose address is an interface, does not
// allocate one (an IP slice and the struct) per datagram. It is a
// direct-mapped table: an address that collides with another is made
// afresh, nothing is ever locked, and memory stays fixed. Callers must
// treat the addresses as read-only: the next datagram from the same peer
// returns the same one (pion/turn and pion/ice only compare, print and
// send to them).
type AddrCache struct {
	slots []atomic.Pointer[cachedAddr]
	mask  uint64
}

type cachedAddr struct {
	ap   netip.AddrPort
	addr *net.UDPAddr
}

// NewAddrCache makes a cache of at least n slots (rounded up to a power
// of two).
func NewAddrCache(n int) *AddrCache {
	size := 1
	for size < n {
		size <<= 1
	}
	return &AddrCache{slots: make([]atomic.Pointer[cachedAddr], size), mask: uint64(size - 1)}
}

// Get returns the address for ap.
func (c *AddrCache) Get(ap netip.AddrPort) *net.UDPAddr {
	a16 := ap.Addr().As16()
	h := uint64(ap.Port())
	for _, b := range a16[8:] { // the low half: all of an IPv4 address
		h = h*1099511628211 ^ uint64(b)
	}
	slot := &c.slots[(h^h>>29)&c.mask]
	if e := slot.Load(); e != nil && e.ap == ap {
		return e.addr
	}
	e := &cachedAddr{ap: ap, addr: net.UDPAddrFromAddrPort(ap)}
	slot.Store(e)
	return e.addr
}
