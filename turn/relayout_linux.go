package turn

import (
	"fmt"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/duetchat/duet/internal/udpbatch"
)

// mmsghdr is the kernel's struct mmsghdr: a msghdr and the byte count
// of its datagram, padded to the word size.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [unsafe.Sizeof(uintptr(0)) - 4]byte
}

// outBatch is one poller's ChannelData to clients: the datagrams one
// round of ready relay sockets yields are read straight into its slots,
// framed there, and leave in one sendmmsg on a listener socket when the
// round ends. Batching per round adds no delay (nothing waits for a
// timer) and no wake-up (the poller is awake anyway).
type outBatch struct {
	conn  *udpbatch.Conn // the listener socket; its own queue takes what sendmmsg does not
	raw   syscall.RawConn
	bufs  [][]byte
	dst   []netip.AddrPort
	iovs  []unix.Iovec
	sas   []unix.RawSockaddrInet4
	hdrs  []mmsghdr
	n     int
	off   int // sent so far, by send
	fail  bool
	sendF func(fd uintptr)
}

func newOutBatch(conn *udpbatch.Conn, size int) (*outBatch, error) {
	raw, err := conn.UDPConn().SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("listener socket: %w", err)
	}
	b := &outBatch{
		conn: conn, raw: raw, bufs: make([][]byte, size), dst: make([]netip.AddrPort, size),
		iovs: make([]unix.Iovec, size), sas: make([]unix.RawSockaddrInet4, size), hdrs: make([]mmsghdr, size),
	}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, relayBuf)
		b.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.sas[i]))
		b.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet4
		b.hdrs[i].hdr.Iov = &b.iovs[i]
		b.hdrs[i].hdr.SetIovlen(1)
		b.iovs[i].Base = &b.bufs[i][0]
	}
	b.sendF = b.sendmmsg
	return b, nil
}

// slot is the buffer the next datagram is read into.
func (b *outBatch) slot() []byte { return b.bufs[b.n] }

func (b *outBatch) full() bool { return b.n == len(b.bufs) }

// add queues the framed datagram in the current slot for to.
func (b *outBatch) add(size int, to netip.AddrPort) {
	if !to.Addr().Is4() {
		_, _ = b.conn.WriteToAddrPort(b.bufs[b.n][:size], to)
		return
	}
	b.dst[b.n] = to
	b.sas[b.n] = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: to.Addr().As4()}
	p := (*[2]byte)(unsafe.Pointer(&b.sas[b.n].Port))
	p[0], p[1] = byte(to.Port()>>8), byte(to.Port())
	b.iovs[b.n].SetLen(size)
	b.n++
}

// flush sends what is queued. What the socket will not take now (its
// buffer is full) goes through the listener's own queue instead.
func (b *outBatch) flush() {
	b.off = 0
	for b.off < b.n {
		b.fail = false
		if b.raw.Control(b.sendF) != nil || b.fail {
			break
		}
	}
	for i := b.off; i < b.n; i++ {
		_, _ = b.conn.WriteToAddrPort(b.bufs[i][:b.iovs[i].Len], b.dst[i])
	}
	b.n = 0
}

func (b *outBatch) sendmmsg(fd uintptr) {
	// Raw: MSG_DONTWAIT never blocks.
	r, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[b.off])),
		uintptr(b.n-b.off), unix.MSG_DONTWAIT, 0, 0)
	switch {
	case errno == unix.EINTR:
	case errno != 0 && errno != unix.EAGAIN && errno != unix.EWOULDBLOCK:
		b.off++ // this datagram was refused (say, unreachable): skip it
	case errno != 0, r == 0:
		b.fail = true
	default:
		b.off += int(r)
	}
}
