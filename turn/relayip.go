package turn

import (
	"errors"
	"fmt"
	"net"
)

// RelayIP picks the address relay candidates carry. An explicit
// public_ip always wins; otherwise the address of the interface that
// holds the default route, then the first non-loopback IPv4 address.
func RelayIP(configured string) (ip net.IP, source string, err error) {
	if configured != "" {
		ip = net.ParseIP(configured)
		if ip == nil {
			return nil, "", fmt.Errorf("public_ip %q is not an IP address", configured)
		}
		if ip.To4() == nil {
			return nil, "", fmt.Errorf("public_ip %s: the TURN relay (pion/turn v4) relays IPv4 only", configured)
		}
		return ip.To4(), "public_ip", nil
	}
	// Connecting a UDP socket sends nothing; it only asks the kernel
	// which source address the default route would use.
	if c, err := net.Dial("udp4", "192.0.2.1:9"); err == nil {
		defer c.Close()
		if a, ok := c.LocalAddr().(*net.UDPAddr); ok && !a.IP.IsLoopback() && !a.IP.IsUnspecified() {
			return a.IP.To4(), "default route", nil
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, "", fmt.Errorf("listing interface addresses: %w", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.To4(), "interface", nil
		}
	}
	return nil, "", errors.New("no IPv4 address found for the relay: set public_ip")
}
