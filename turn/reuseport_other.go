//go:build !linux

package turn

import (
	"fmt"
	"net"
)

// listenUDPReuse binds one socket where SO_REUSEPORT is not wired up.
func listenUDPReuse(addr string, _ int) ([]net.PacketConn, error) {
	c, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return nil, fmt.Errorf("binding UDP socket: %w", err)
	}
	setBuffers(c, listenerBuffer)
	return []net.PacketConn{c}, nil
}
