//go:build !linux

package udpbatch

import "net"

// Elsewhere than Linux there is no sendmmsg/recvmmsg: a Conn reads and
// writes one datagram per system call, as the socket itself would.
type (
	sysConn  struct{ gso bool } // never segments
	sysBatch struct{}
)

func newSysConn(*net.UDPConn, bool) *sysConn { return nil }
func (*sysBatch) init(*batch)                {}
func (*sysConn) send(*batch) int             { return 0 }
func (*sysConn) recv(*batch) (int, error)    { return 0, nil }
