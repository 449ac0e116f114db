package turn

import (
	"context"
	"fmt"
	"net"

	"github.com/duetchat/duet/internal/reuseport"
)

// listenUDPReuse binds n UDP sockets to one address with SO_REUSEPORT, so
// the kernel spreads clients over n read loops (pion reads one datagram at
// a time per socket). Port 0 picks a port for the first and reuses it.
func listenUDPReuse(addr string, n int) ([]net.PacketConn, error) {
	lc := net.ListenConfig{Control: reuseport.Control}
	var conns []net.PacketConn
	for i := 0; i < n; i++ {
		c, err := lc.ListenPacket(context.Background(), "udp4", addr)
		if err != nil {
			for _, c := range conns {
				_ = c.Close()
			}
			return nil, fmt.Errorf("binding UDP socket %d of %d: %w", i+1, n, err)
		}
		setBuffers(c, listenerBuffer)
		conns = append(conns, c)
		addr = c.LocalAddr().String()
	}
	return conns, nil
}
