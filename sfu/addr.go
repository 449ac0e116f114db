package sfu

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/pion/ice/v4"
)

// addrPlan is where the SFU's ports bind, the one local address its
// candidates are gathered from, and the one address they carry.
//
// Exactly one local address is gathered, for ICE-TCP's sake (issue 16):
// pion's TCP mux hands an accepted connection to the agent registered for
// (ufrag, local IP of the accepted socket). Were several local addresses
// gathered and rewritten to the same public address, the agent would keep
// one of the identical candidates (maybe the loopback one) and a
// connection arriving on another address would find no agent.
type addrPlan struct {
	bind      netip.Addr // the ports' address; unspecified = every address
	gather    netip.Addr // the local address candidates come from
	advertise netip.Addr // what every candidate of the SFU carries
	// loopback: gather sits on a loopback interface, which pion skips
	// unless told to include it.
	loopback bool
	// own are the node's addresses: its interfaces' and the advertised
	// one. No client's candidate may name them.
	own map[netip.Addr]struct{}
}

// hostAddr is one of the host's interface addresses.
type hostAddr struct {
	addr     netip.Addr
	loopback bool // on a loopback interface
}

// hostAddrs lists the host's interface addresses.
func hostAddrs() ([]hostAddr, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("sfu: listing interfaces: %w", err)
	}
	var out []hostAddr
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, hostAddr{addr: ip.Unmap(), loopback: ifc.Flags&net.FlagLoopback != 0})
			}
		}
	}
	return out, nil
}

func parseIPv4(what, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("sfu: %s %q is not an IP address", what, s)
	}
	a = a.Unmap()
	if !a.Is4() {
		return netip.Addr{}, fmt.Errorf("sfu: %s %s: the SFU runs on IPv4 only", what, s)
	}
	return a, nil
}

// planAddrs decides the addresses from the options and the host's
// addresses:
//
//   - bind: ListenIP, or every address.
//   - advertise: PublicIP; without one ListenIP when it names one address.
//   - gather: ListenIP when it names one address (nothing else can reach
//     its sockets); else the advertised address when the host has it;
//     else (1:1 NAT, a cloud VM) LocalIP, the interface address the
//     traffic for the advertised address arrives on. When gather and
//     advertise differ, pion rewrites the one into the other.
func planAddrs(opt Options, host []hostAddr) (addrPlan, error) {
	p := addrPlan{bind: netip.IPv4Unspecified(), own: map[netip.Addr]struct{}{}}
	local := func(a netip.Addr) (hostAddr, bool) {
		for _, h := range host {
			if h.addr == a {
				return h, true
			}
		}
		return hostAddr{}, false
	}
	if opt.ListenIP != "" {
		a, err := parseIPv4("sfu.listen_ip", opt.ListenIP)
		if err != nil {
			return p, err
		}
		p.bind = a
	}
	switch {
	case opt.PublicIP != "":
		a, err := parseIPv4("public_ip", opt.PublicIP)
		if err != nil {
			return p, err
		}
		if a.IsUnspecified() {
			return p, fmt.Errorf("sfu: public_ip %s cannot be advertised", a)
		}
		p.advertise = a
	case !p.bind.IsUnspecified():
		p.advertise = p.bind
	default:
		return p, fmt.Errorf("sfu: no address to advertise: set public_ip")
	}
	_, advertiseLocal := local(p.advertise)
	switch {
	case !p.bind.IsUnspecified():
		p.gather = p.bind
	case advertiseLocal:
		p.gather = p.advertise
	case opt.LocalIP != "":
		a, err := parseIPv4("the local address for public_ip", opt.LocalIP)
		if err != nil {
			return p, err
		}
		if _, ok := local(a); !ok {
			return p, fmt.Errorf("sfu: %s is not an address of this host", a)
		}
		p.gather = a
	default:
		return p, fmt.Errorf("sfu: public_ip %s is not an address of this host and no local address to map it from was found: set sfu.listen_ip", p.advertise)
	}
	h, _ := local(p.gather)
	p.loopback = h.loopback || p.gather.IsLoopback()
	for _, h := range host {
		p.own[h.addr.WithZone("")] = struct{}{}
	}
	for _, a := range []netip.Addr{p.advertise, p.gather, p.bind} {
		if !a.IsUnspecified() {
			p.own[a] = struct{}{}
		}
	}
	return p, nil
}

// oneAddrUDPMux is the UDP mux telling pion it listens on the gather
// address only: on a socket bound to every address pion's own mux would
// list (and gather) every interface address, loopback included.
type oneAddrUDPMux struct {
	ice.UDPMux
	addr net.Addr
}

func (m oneAddrUDPMux) GetListenAddresses() []net.Addr { return []net.Addr{m.addr} }
