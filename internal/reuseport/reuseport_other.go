//go:build !linux

// Package reuseport binds sockets with SO_REUSEPORT: several sockets (in
// one process or several) on one address, the kernel spreading new
// connections or datagrams over them.
package reuseport

import (
	"errors"
	"syscall"
)

// Supported reports whether this platform has SO_REUSEPORT wired up.
const Supported = false

// Control refuses: SO_REUSEPORT is only wired up on Linux.
func Control(_, _ string, _ syscall.RawConn) error {
	return errors.New("SO_REUSEPORT is only supported on Linux")
}
