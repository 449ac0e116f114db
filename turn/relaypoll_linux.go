package turn

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/duetchat/duet/internal/udpbatch"
)

// pollBatch is how many ready sockets one epoll_wait reports, and so
// how many ChannelData one sendmmsg carries at most.
const pollBatch = 256

// relayPoller reads many relay sockets from one goroutine: one
// epoll_wait reports every socket with a datagram waiting, and each is
// read once (level-triggered, so what is left is reported again). Go's
// netpoller would instead wake a goroutine per datagram and read each
// socket a second time to find it empty.
//
// The epoll descriptor itself sits in Go's netpoller (an os.File over a
// non-blocking descriptor), and epoll_wait is only ever asked what is
// ready now: a goroutine blocked in epoll_wait would hold its P until
// sysmon takes it back (up to milliseconds), and the relay's other
// goroutines would wait for it.
type relayPoller struct {
	ep  *os.File
	raw syscall.RawConn

	mu    sync.RWMutex
	conns map[uint32]*fastConn
	done  chan struct{}

	// One read's state, used by the loop's goroutine only: the
	// callbacks are built once so a read allocates no closure.
	events []unix.EpollEvent
	ready  int
	werr   error
	buf    []byte // the out batch's slot being read into
	out    *outBatch
	sa     unix.RawSockaddrInet6
	n      int
	from   netip.AddrPort
	recv   func(fd uintptr)
	wait   func(fd uintptr) bool
}

// noID is never an allocation's id.
const noID = 0

func newRelayPoller(out *udpbatch.Conn) (*relayPoller, error) {
	ob, err := newOutBatch(out, pollBatch)
	if err != nil {
		return nil, err
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("epoll descriptor: %w", err)
	}
	ep := os.NewFile(uintptr(epfd), "relay-epoll")
	raw, err := ep.SyscallConn()
	if err != nil {
		_ = ep.Close()
		return nil, fmt.Errorf("epoll descriptor: %w", err)
	}
	p := &relayPoller{
		ep: ep, raw: raw, conns: map[uint32]*fastConn{}, done: make(chan struct{}),
		events: make([]unix.EpollEvent, pollBatch), out: ob,
	}
	p.recv, p.wait = p.recvFrom, p.poll
	go p.loop()
	return p, nil
}

// epfd runs fn with the epoll descriptor, held open.
func (p *relayPoller) epfd(fn func(epfd int) error) error {
	var ferr error
	if err := p.raw.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return fmt.Errorf("epoll descriptor: %w", err)
	}
	return ferr
}

func (p *relayPoller) add(fc *fastConn) error {
	raw, err := fc.c.udp.SyscallConn()
	if err != nil {
		return fmt.Errorf("relay socket: %w", err)
	}
	fc.raw = raw
	p.mu.Lock()
	p.conns[fc.id] = fc
	p.mu.Unlock()
	var cerr error
	err = raw.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fc.id)} //nolint:gosec // ids wrap harmlessly
		cerr = p.epfd(func(epfd int) error { return unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, int(fd), &ev) })
	})
	if err = errors.Join(err, cerr); err != nil {
		p.mu.Lock()
		delete(p.conns, fc.id)
		p.mu.Unlock()
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

// remove stops reading fc. Its socket is closed after: an event already
// reported for it finds no entry, and a read under way holds the fd open
// (RawConn.Control), so a reused descriptor number is never read.
func (p *relayPoller) remove(fc *fastConn) {
	p.mu.Lock()
	delete(p.conns, fc.id)
	p.mu.Unlock()
	_ = fc.raw.Control(func(fd uintptr) {
		_ = p.epfd(func(epfd int) error { return unix.EpollCtl(epfd, unix.EPOLL_CTL_DEL, int(fd), nil) })
	})
}

// close stops the loop: closing the descriptor wakes its wait.
func (p *relayPoller) close() {
	_ = p.ep.Close()
	<-p.done
}

func (p *relayPoller) loop() {
	defer close(p.done)
	for {
		// Read parks in Go's netpoller until the epoll descriptor is
		// readable, that is until a relay socket has a datagram.
		if err := p.raw.Read(p.wait); err != nil || p.werr != nil {
			return
		}
		for i := range p.ready {
			p.mu.RLock()
			fc := p.conns[uint32(p.events[i].Fd)] //nolint:gosec // stored from a uint32
			p.mu.RUnlock()
			if fc != nil {
				p.readOne(fc)
			}
		}
		p.out.flush()
	}
}

// poll asks which sockets are ready now; false parks Read until there
// are some (the epoll descriptor is edge-triggered in Go's netpoller,
// so it only parks once epoll_wait found nothing).
func (p *relayPoller) poll(fd uintptr) bool {
	for {
		n, err := unix.EpollWait(int(fd), p.events, 0)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			p.ready, p.werr = 0, err
			return true
		case n == 0:
			p.ready = 0
			return false
		}
		p.ready = n
		return true
	}
}

// readOne reads one waiting datagram from fc's socket, if there still
// is one. Control holds the descriptor open while it reads.
func (p *relayPoller) readOne(fc *fastConn) {
	p.n, p.buf = -1, p.out.slot()
	if fc.raw.Control(p.recv) != nil || p.n < 0 || !p.from.IsValid() {
		return
	}
	if fc.fromPeer(p.buf, p.n, p.from) {
		p.out.add(chanHeader+p.n, fc.client)
		if p.out.full() {
			p.out.flush()
		}
	}
}

func (p *relayPoller) recvFrom(fd uintptr) {
	salen := uint32(unsafe.Sizeof(p.sa))
	// Raw: it never blocks (MSG_DONTWAIT), so the scheduler need not know.
	r, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, fd,
		uintptr(unsafe.Pointer(&p.buf[chanHeader])), uintptr(len(p.buf)-chanHeader),
		unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&p.sa)), uintptr(unsafe.Pointer(&salen)))
	if errno != 0 {
		return
	}
	p.n, p.from = int(r), sockaddrPort(&p.sa)
}

func sockaddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), ntohs(s4.Port))
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), ntohs(sa.Port))
	}
	return netip.AddrPort{}
}

// ntohs turns a port as the kernel stores it (network order) into a number.
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// rawSender writes a client's ChannelData to the peer with one sendto on
// the relay socket, skipping the net package's locking and poller
// bookkeeping. One per listener read loop: not for concurrent use.
type rawSender struct {
	b    []byte
	sa   unix.RawSockaddrInet4
	ok   bool
	send func(fd uintptr)
}

func newRawSender() *rawSender {
	s := &rawSender{}
	s.send = s.sendTo
	return s
}

// write reports whether b left; false leaves it to the caller (an IPv6
// peer, a full socket buffer, a closed socket).
func (s *rawSender) write(fc *fastConn, b []byte, to netip.AddrPort) bool {
	if s == nil || !to.Addr().Is4() {
		return false
	}
	s.b, s.ok = b, false
	s.sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: to.Addr().As4()}
	p := (*[2]byte)(unsafe.Pointer(&s.sa.Port))
	p[0], p[1] = byte(to.Port()>>8), byte(to.Port())
	err := fc.raw.Control(s.send)
	s.b = nil
	return err == nil && s.ok
}

func (s *rawSender) sendTo(fd uintptr) {
	// Raw: MSG_DONTWAIT never blocks.
	n, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, fd,
		uintptr(unsafe.Pointer(unsafe.SliceData(s.b))), uintptr(len(s.b)),
		unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&s.sa)), unix.SizeofSockaddrInet4)
	s.ok = errno == 0 && int(n) == len(s.b)
}
