// Package reuseport binds sockets with SO_REUSEPORT: several sockets (in
// one process or several) on one address, the kernel spreading new
// connections or datagrams over them.
package reuseport

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// Supported reports whether this platform has SO_REUSEPORT wired up.
const Supported = true

// Control sets SO_REUSEPORT; use it as a net.ListenConfig's Control.
func Control(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}
