package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/internal/reuseport"
)

// Listen binds the HTTP address. With http.reuse_port the socket carries
// SO_REUSEPORT: a second duet (the next version, on the same Redis) binds
// the same address and the kernel hands it new connections, while this
// one drains - the clients it tells to reconnect land on the new one.
func Listen(ctx context.Context, c configs.HTTP) (net.Listener, error) {
	var lc net.ListenConfig
	if c.ReusePort {
		if !reuseport.Supported {
			return nil, fmt.Errorf("http.reuse_port: SO_REUSEPORT is not available on this platform")
		}
		lc.Control = reuseport.Control
	}
	ln, err := lc.Listen(ctx, "tcp", c.Listen)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) && !c.ReusePort {
			return nil, fmt.Errorf("listening on %s: %w (to run two duets on one address, set http.reuse_port on both)", c.Listen, err)
		}
		return nil, fmt.Errorf("listening on %s: %w", c.Listen, err)
	}
	return ln, nil
}
