//go:build linux

package udpbatch

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is the kernel's struct mmsghdr: a msghdr and the byte count
// of its datagram, padded to the word size.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [unsafe.Sizeof(uintptr(0)) - 4]byte
}

// sysConn is the socket's raw side: its family and the system calls,
// bound once so that calling them allocates nothing.
type sysConn struct {
	rc    syscall.RawConn
	inet6 bool // an AF_INET6 socket: IPv4 peers are v4-mapped
	// gso: runs of equal-size datagrams to one address leave as one
	// UDP_SEGMENT message (asked for, and the kernel has it). Turned off
	// for good when the kernel refuses one. Only the sender touches it.
	gso    bool
	sendFn func(fd uintptr) bool
	recvFn func(fd uintptr) bool
	// per call, for the bound functions (the callers hold a lock: the
	// flusher is the only sender, and reads are under rmu)
	sb       *batch
	sN, sOff int
	sDropped int
	rb       *batch
	rN       int
	rErr     syscall.Errno
}

// sysBatch is a batch's headers, iovecs and socket addresses.
type sysBatch struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // big enough for either family
	nlens []uint32                // each datagram's address length
	// sending: message m starts at datagram first[m] and carries segs[m]
	// datagrams, the UDP_SEGMENT control message in ctl when more than one
	first, segs []int
	ctl         []byte
}

// gsoMaxSegs and gsoMaxBytes bound one UDP_SEGMENT message: the kernel
// takes at most 64 segments (UDP_MAX_SEGMENTS before Linux 6.9) and one
// IP packet's worth of payload.
const (
	gsoMaxSegs  = 64
	gsoMaxBytes = 65535 - 8 - 60
)

var cmsgSpace = unix.CmsgSpace(2)

func newSysConn(c *net.UDPConn, gso bool) *sysConn {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	s := &sysConn{rc: rc}
	var sa unix.Sockaddr
	var gerr error
	if err := rc.Control(func(fd uintptr) { sa, gerr = unix.Getsockname(int(fd)) }); err != nil || gerr != nil {
		return nil
	}
	_, s.inet6 = sa.(*unix.SockaddrInet6)
	if gso {
		// The option exists (Linux 4.18 and later) if it can be read.
		var gerr error
		if err := rc.Control(func(fd uintptr) { _, gerr = unix.GetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT) }); err == nil && gerr == nil {
			s.gso = true
		}
	}
	s.sendFn = s.sendmmsg
	s.recvFn = s.recvmmsg
	return s
}

func (b *sysBatch) init(bt *batch) {
	n := len(bt.bufs)
	b.hdrs = make([]mmsghdr, n)
	b.iovs = make([]unix.Iovec, n)
	b.names = make([]unix.RawSockaddrInet6, n)
	b.nlens = make([]uint32, n)
	b.first = make([]int, n)
	b.segs = make([]int, n)
	b.ctl = make([]byte, n*cmsgSpace)
	for i := range b.hdrs {
		b.iovs[i].Base = &bt.bufs[i][:1][0]
		b.hdrs[i].hdr.Iov = &b.iovs[i]
		b.hdrs[i].hdr.SetIovlen(1)
		b.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
	}
}

// send writes a batch's datagrams and returns how many the kernel
// refused (each skipped alone).
func (s *sysConn) send(bt *batch) int {
	sb := &bt.sys
	n := 0
	for i := 0; i < bt.n; i++ {
		namelen := s.putAddr(&sb.names[i], bt.addrs[i])
		if namelen == 0 {
			continue // an IPv6 peer on an IPv4 socket: undeliverable
		}
		if n != i { // compact over skipped ones
			bt.bufs[n], bt.bufs[i] = bt.bufs[i], bt.bufs[n]
			sb.names[n] = sb.names[i]
			sb.iovs[n].Base, sb.iovs[i].Base = sb.iovs[i].Base, sb.iovs[n].Base
		}
		sb.iovs[n].SetLen(len(bt.bufs[n]))
		sb.nlens[n] = namelen
		n++
	}
	dropped := bt.n - n
	s.sb, s.sOff, s.sDropped = bt, 0, 0
	s.sN = s.messages(bt, 0, n, s.gso)
	if n > 0 {
		_ = s.rc.Write(s.sendFn) // an error here is a closed socket
	}
	s.sb = nil
	return dropped + s.sDropped
}

// messages lays datagrams [from, to) of bt out as sendmmsg messages and
// returns how many. With gso, a run of datagrams to one address, all of
// one size but the last (which may be shorter), is one message: the
// kernel cuts it into datagrams again, but routes, filters and queues it
// once.
func (s *sysConn) messages(bt *batch, from, to int, gso bool) int {
	sb := &bt.sys
	m := 0
	for i := from; i < to; m++ {
		j, size := i+1, len(bt.bufs[i])
		if gso {
			total := size
			for j < to && j-i < gsoMaxSegs && bt.addrs[j] == bt.addrs[i] && len(bt.bufs[j]) <= size && total+len(bt.bufs[j]) <= gsoMaxBytes {
				total += len(bt.bufs[j])
				j++
				if len(bt.bufs[j-1]) < size {
					break // a shorter one ends a run
				}
			}
		}
		h := &sb.hdrs[m].hdr
		h.Name = (*byte)(unsafe.Pointer(&sb.names[i]))
		h.Namelen = sb.nlens[i]
		h.Iov = &sb.iovs[i]
		h.SetIovlen(j - i)
		sb.first[m], sb.segs[m] = i, j-i
		if j-i > 1 {
			c := sb.ctl[m*cmsgSpace : (m+1)*cmsgSpace]
			ch := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
			ch.Level, ch.Type = unix.SOL_UDP, unix.UDP_SEGMENT
			ch.SetLen(unix.CmsgLen(2))
			*(*uint16)(unsafe.Pointer(&c[unix.CmsgLen(0)])) = uint16(size)
			h.Control = &c[0]
			h.SetControllen(cmsgSpace)
		} else {
			h.Control = nil
			h.SetControllen(0)
		}
		i = j
	}
	return m
}

// sendmmsg runs inside RawConn.Write: false asks to wait until the
// socket is writable and be called again.
func (s *sysConn) sendmmsg(fd uintptr) bool {
	for s.sOff < s.sN {
		hs := s.sb.sys.hdrs[s.sOff:s.sN]
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&hs[0])), uintptr(len(hs)), 0, 0, 0)
		switch {
		case errno == unix.EAGAIN:
			return false
		case errno == unix.EINTR:
		case errno != 0 && s.sb.sys.segs[s.sOff] > 1:
			// The kernel refused a segmented message: send its datagrams
			// and the rest of the batch one message each (so one bad
			// datagram is dropped alone). EIO says the socket cannot
			// segment at all (IPsec, UDP-Lite): stop asking. EINVAL
			// may be one path's MTU, or the address: ask again next
			// batch.
			if errno == unix.EIO || errno == unix.EOPNOTSUPP {
				s.gso = false
			}
			sb := &s.sb.sys
			s.sN = s.messages(s.sb, sb.first[s.sOff], sb.first[s.sN-1]+sb.segs[s.sN-1], false)
			s.sOff = 0
		case errno != 0:
			// The first datagram failed (unroutable, refused by a
			// filter, too big): skip it, send the rest.
			s.sOff++
			s.sDropped++
		default:
			s.sOff += int(r)
		}
	}
	return true
}

// recv fills bt with the datagrams waiting (at least one: it waits).
func (s *sysConn) recv(bt *batch) (int, error) {
	sb := &bt.sys
	for i := range sb.hdrs {
		sb.iovs[i].SetLen(cap(bt.bufs[i]))
		sb.hdrs[i].hdr.Iov = &sb.iovs[i]
		sb.hdrs[i].hdr.SetIovlen(1)
		sb.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&sb.names[i]))
		sb.hdrs[i].hdr.Control = nil
		sb.hdrs[i].hdr.SetControllen(0)
		sb.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
		sb.hdrs[i].hdr.Flags = 0
	}
	s.rb, s.rN, s.rErr = bt, 0, 0
	err := s.rc.Read(s.recvFn)
	s.rb = nil
	if err != nil {
		return 0, err
	}
	if s.rErr != 0 {
		return 0, &net.OpError{Op: "read", Net: "udp", Err: s.rErr}
	}
	for i := 0; i < s.rN; i++ {
		bt.bufs[i] = bt.bufs[i][:min(int(sb.hdrs[i].n), cap(bt.bufs[i]))]
		bt.addrs[i] = getAddr(&sb.names[i])
	}
	return s.rN, nil
}

func (s *sysConn) recvmmsg(fd uintptr) bool {
	hs := s.rb.sys.hdrs
	for {
		r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&hs[0])), uintptr(len(hs)), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			s.rN = int(r)
			return true
		case unix.EAGAIN:
			return false
		case unix.EINTR:
			continue
		default:
			s.rErr = errno
			return true
		}
	}
}

// putAddr writes a as the socket's family of address and returns its
// length (0: a cannot be reached from this socket).
func (s *sysConn) putAddr(sa *unix.RawSockaddrInet6, a netip.AddrPort) uint32 {
	ip := a.Addr()
	if s.inet6 {
		sa.Family = unix.AF_INET6
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], a.Port())
		sa.Flowinfo, sa.Scope_id = 0, 0
		sa.Addr = ip.As16()
		return unix.SizeofSockaddrInet6
	}
	ip = ip.Unmap()
	if !ip.Is4() {
		return 0
	}
	s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
	s4.Family = unix.AF_INET
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&s4.Port))[:], a.Port())
	s4.Addr = ip.As4()
	s4.Zero = [8]uint8{}
	return unix.SizeofSockaddrInet4
}

// getAddr reads a socket address the kernel wrote.
func getAddr(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&s4.Port))[:]))
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:]))
	}
	return netip.AddrPort{}
}
