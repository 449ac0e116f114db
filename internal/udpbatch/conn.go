// Package udpbatch moves a UDP socket's datagrams in batches: writes from
// any number of goroutines are queued and leave in one sendmmsg, and
// reads take every datagram waiting in one recvmmsg. On a busy socket
// that is one system call for many datagrams instead of one each, which
// is what a media relay's CPU goes to. Linux only; elsewhere every
// datagram is its own system call, as without this package.
//
// pion/transport's udp.BatchConn does the same for writes, but its
// flusher ticks whether or not anything is queued (3-4% of a core on an
// idle 2-core VM), a failed datagram drops the rest of its batch, and its
// batched reads allocate an address per datagram. Here an idle socket
// costs nothing, a failed datagram is skipped alone, and neither path
// allocates.
//
// With Options.GSO, a run of equal-size datagrams to one address inside
// a batch (a video frame's packets, drained by one forward loop) goes
// to the kernel as one UDP_SEGMENT message: routed, filtered and queued
// once, then cut into datagrams again (by the NIC, or in software).
// Per datagram written and read on loopback, in runs: 2.1-2.4 µs of CPU
// against 2.7-3.8 µs batched without it (BenchmarkWriteRead).
package udpbatch

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Options tune a Conn; the zero value is the defaults.
type Options struct {
	// Batch is how many datagrams one system call moves (default 32).
	Batch int
	// Linger is how long the first datagram of a batch may wait for
	// others before it leaves anyway (default 500µs): the bound on the
	// delay batching adds to a lone datagram.
	Linger time.Duration
	// MinBatch is the batch size below which batching does not pay
	// (default 4): a partial batch costs the flusher's two wake-ups,
	// about what three system calls save. While datagrams come further
	// apart than Linger/MinBatch, each goes out directly, at no added
	// delay; closer, they batch. Negative: always batch (tests).
	MinBatch int
	// Batches is how many batches may be filling, queued or being sent
	// at once (default 8; those past 8 are made when first needed). A
	// write that finds every one taken goes out on its own, and then
	// waits for the socket behind the sender: a socket whose sender may
	// be kept off the CPU for milliseconds (a busy SFU) wants more.
	Batches int
	// GSO sends a run of equal-size datagrams to one address, next to
	// each other in a batch, as one UDP_SEGMENT message where the kernel
	// has it (Linux 4.18 on; elsewhere, or once the kernel refuses one,
	// each datagram is its own message as without it).
	GSO bool
	// MTU is the largest datagram a batch slot holds (default 2048).
	// A larger write goes out on its own; a larger read is truncated, as
	// a read into a buffer of this size would be.
	MTU int
}

const (
	defaultBatch  = 32
	defaultLinger = 500 * time.Microsecond
	defaultMTU    = 2048
	defaultMin    = 4
	// batches a Conn makes up front: one filling, the rest queued or
	// being sent.
	defaultBatches = 8
)

// Conn is a batching UDP socket. It is a net.PacketConn, and reads and
// writes netip.AddrPort without allocating (pion/ice's
// AddrPortReaderWriter). Close flushes what is queued.
type Conn struct {
	conn *net.UDPConn
	opt  Options
	sys  *sysConn // nil: no batching on this platform or socket

	// writes
	mu       sync.Mutex
	cur      *batch   // being filled
	free     []*batch // empty
	queued   []*batch // to send, oldest first
	lingers  bool     // the flusher holds a linger for cur
	closed   bool
	inflight int // batches off the queue, being sent
	made     int // batches made so far, up to opt.Batches
	// last write, and the average gap between writes (both ns since
	// epoch): sparse writes go out directly.
	epoch     time.Time
	last, gap int64
	sparse    int64         // the gap above which writes are sparse; 0: never
	kick      chan struct{} // cur got its first datagram
	done      chan struct{}
	flushed   chan struct{} // the flusher has returned
	// sending is held by whoever sends the queue, in order: the writer
	// whose datagram filled a batch, or the flusher.
	sending sync.Mutex

	// reads
	rmu   sync.Mutex
	rb    *batch
	rnext int
	addrs *AddrCache

	// Dropped counts datagrams the kernel refused while sending a batch
	// (each is skipped; the rest of its batch still goes).
	dropped atomic.Uint64
}

// batch is a set of datagram slots and, on Linux, the headers that
// point the kernel at them.
type batch struct {
	n     int
	bufs  [][]byte
	addrs []netip.AddrPort
	sys   sysBatch
}

// New wraps c. The Conn owns c from now on: Close closes it.
func New(c *net.UDPConn, opt Options) *Conn {
	if opt.Batch <= 0 {
		opt.Batch = defaultBatch
	}
	if opt.Linger <= 0 {
		opt.Linger = defaultLinger
	}
	if opt.MTU <= 0 {
		opt.MTU = defaultMTU
	}
	if opt.MinBatch == 0 {
		opt.MinBatch = defaultMin
	}
	if opt.Batches <= 0 {
		opt.Batches = defaultBatches
	}
	bc := &Conn{conn: c, opt: opt, sys: newSysConn(c, opt.GSO),
		kick: make(chan struct{}, 1), done: make(chan struct{}), flushed: make(chan struct{}),
		epoch: time.Now(), gap: int64(opt.Linger), addrs: NewAddrCache(1024)}
	if opt.MinBatch > 0 {
		bc.sparse = int64(opt.Linger) / int64(opt.MinBatch)
	}
	if bc.sys == nil {
		close(bc.flushed)
		return bc
	}
	bc.cur = bc.newBatch()
	for range min(opt.Batches, defaultBatches) - 1 {
		bc.free = append(bc.free, bc.newBatch())
	}
	bc.made = min(opt.Batches, defaultBatches)
	bc.rb = bc.newBatch()
	go bc.flusher()
	return bc
}

// Dropped is how many queued datagrams the kernel refused.
func (c *Conn) Dropped() uint64 { return c.dropped.Load() }

// WriteToAddrPort queues b for addr and returns; b may be reused when
// it returns. The write that fills a batch sends the queue (unless
// another goroutine is sending it), so a busy socket does not wait for
// the flusher to be scheduled; a partial batch leaves once its first
// datagram has lingered. A datagram larger than MTU, or one written
// while every batch is taken, goes out directly.
func (c *Conn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	if c.sys == nil || len(b) > c.opt.MTU {
		return c.conn.WriteToUDPAddrPort(b, addr)
	}
	now := int64(time.Since(c.epoch))
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	// The gap is capped so that one idle spell does not keep a burst
	// that follows it out of batches for long.
	c.gap += (min(now-c.last, 2*int64(c.opt.Linger)) - c.gap) / 8
	c.last = now
	bt := c.cur
	if bt == nil || (c.gap > c.sparse && c.sparse > 0 && bt.n == 0 && len(c.queued) == 0 && c.inflight == 0) {
		// Every batch is taken, or writes are sparse and nothing is
		// queued that this one could overtake.
		c.mu.Unlock()
		return c.conn.WriteToUDPAddrPort(b, addr)
	}
	i := bt.n
	bt.bufs[i] = bt.bufs[i][:copy(bt.bufs[i][:cap(bt.bufs[i])], b)]
	bt.addrs[i] = addr
	bt.n++
	full, kick := bt.n == len(bt.bufs), bt.n == 1 && !c.lingers
	if full {
		c.queued = append(c.queued, bt)
		c.cur = c.take()
	} else if kick {
		c.lingers = true
	}
	c.mu.Unlock()
	switch {
	case full:
		c.sendQueued()
	case kick:
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	return len(b), nil
}

func (c *Conn) newBatch() *batch {
	b := &batch{bufs: make([][]byte, c.opt.Batch), addrs: make([]netip.AddrPort, c.opt.Batch)}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, c.opt.MTU)
	}
	b.sys.init(b)
	return b
}

// take returns an empty batch, or nil when all are taken. Under mu.
func (c *Conn) take() *batch {
	if n := len(c.free); n > 0 {
		b := c.free[n-1]
		c.free = c.free[:n-1]
		return b
	}
	if c.made < c.opt.Batches {
		// Past the first few, a batch is made the first time a slow
		// sender lets that many pile up, and kept.
		c.made++
		return c.newBatch()
	}
	return nil
}

// sendQueued sends the queue unless another goroutine is sending it
// (that one sends what was queued here too: it looks again after it lets
// go). One sender at a time, oldest batch first: datagrams leave in the
// order they were written (but for the direct writes above).
func (c *Conn) sendQueued() {
	for {
		if !c.sending.TryLock() {
			return
		}
		c.drain()
		c.sending.Unlock()
		c.mu.Lock()
		more := len(c.queued) > 0
		c.mu.Unlock()
		if !more {
			return
		}
	}
}

// drain sends every queued batch. Under sending.
func (c *Conn) drain() {
	for {
		c.mu.Lock()
		if len(c.queued) == 0 {
			c.mu.Unlock()
			return
		}
		bt := c.queued[0]
		c.queued = append(c.queued[:0], c.queued[1:]...)
		c.inflight++
		c.mu.Unlock()
		c.dropped.Add(uint64(c.sys.send(bt)))
		c.mu.Lock()
		c.inflight--
		bt.n = 0
		if c.cur == nil {
			c.cur = bt
		} else {
			c.free = append(c.free, bt)
		}
		c.mu.Unlock()
	}
}

// flusher sends a partial batch once its first datagram has lingered.
// Idle, it waits on a channel: no timer runs.
func (c *Conn) flusher() {
	defer close(c.flushed)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-c.kick:
			timer.Reset(c.opt.Linger)
			select {
			case <-timer.C:
			case <-c.done:
				timer.Stop()
			}
			c.flushPartial()
		case <-c.done:
			c.flushPartial()
			return
		}
	}
}

// flushPartial queues the batch being filled as it is now (what is
// written meanwhile lingers in turn) and sends the queue. It waits for
// a writer that is sending, so nothing queued is left behind.
func (c *Conn) flushPartial() {
	c.mu.Lock()
	if c.cur != nil && c.cur.n > 0 {
		c.queued = append(c.queued, c.cur)
		c.cur = c.take()
	}
	c.lingers = false
	c.mu.Unlock()
	c.sending.Lock()
	c.drain()
	c.sending.Unlock()
}

// ReadFromAddrPort returns the next datagram: from the last batch read
// while it lasts, else from a fresh recvmmsg (which waits for one).
func (c *Conn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	if c.sys == nil {
		return c.conn.ReadFromUDPAddrPort(b)
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.rnext >= c.rb.n {
		c.rnext, c.rb.n = 0, 0
		n, err := c.sys.recv(c.rb)
		if err != nil {
			return 0, netip.AddrPort{}, err
		}
		c.rb.n = n
	}
	i := c.rnext
	c.rnext++
	return copy(b, c.rb.bufs[i]), c.rb.addrs[i], nil
}

// ReadFrom implements net.PacketConn. The address comes from an
// AddrCache: the same peer's datagrams share one, to be treated as
// read-only.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, ap, err := c.ReadFromAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, c.addrs.Get(ap), nil
}

// WriteTo implements net.PacketConn: a *net.UDPAddr is queued without
// allocating.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: errors.New("not a UDP address")}
	}
	return c.WriteToAddrPort(b, ua.AddrPort())
}

// Close sends what is queued, then closes the socket.
func (c *Conn) Close() error {
	c.mu.Lock()
	already := c.closed
	c.closed = true
	c.mu.Unlock()
	if !already {
		close(c.done)
	}
	<-c.flushed
	return c.conn.Close()
}

// LocalAddr implements net.PacketConn.
func (c *Conn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// SetDeadline implements net.PacketConn; a write deadline applies to the
// flusher's system calls, not to queueing.
func (c *Conn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// SetReadDeadline implements net.PacketConn.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline implements net.PacketConn.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

// UDPConn is the socket underneath (for socket options).
func (c *Conn) UDPConn() *net.UDPConn { return c.conn }
