package sfu

import (
	"net"
	"sync"
	"time"

	"github.com/duetchat/duet/internal/connlimit"
)

// guardedListener caps the ICE-TCP port's connections per address block
// and in total before pion's TCP mux sees them: the mux keeps a goroutine
// and a buffer per connection until its first STUN binding (or its
// timeout), and per ufrag a client names, so without a cap one host
// could hold every descriptor of the node.
type guardedListener struct {
	net.Listener
	guard   *connlimit.Guard
	refused func(reason string)
}

func (l *guardedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, reason := l.guard.Admit(c.RemoteAddr())
		if reason != "" {
			// Accept and reset at once, so the kernel's backlog does not
			// fill with connections nobody will read.
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
			l.refused(reason)
			continue
		}
		return &guardedConn{Conn: c, release: func() { l.guard.Release(key) }}, nil
	}
}

// guardedConn gives its slot back once, when it is closed.
type guardedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *guardedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// firstBindTimeout is how long an ICE-TCP connection may stay silent
// before its first STUN binding, and how long a connection naming a
// ufrag no agent knows lives; pion's default for both is 30 s. A browser
// sends its binding at once.
const firstBindTimeout = 10 * time.Second
