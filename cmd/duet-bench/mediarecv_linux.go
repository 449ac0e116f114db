//go:build linux

package main

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// recvTick is how often a receiver polls its sockets: at 1.5 Mbps a
// stranger gets a packet every 5 ms, so most ticks find a socket empty
// or holding one, and 1 MB socket buffers hold seconds of its traffic.
const recvTick = 500 * time.Microsecond

// receive reads the peers' sockets from one goroutine per CPU, each
// with an epoll set of its own, until ctx ends; the returned func waits
// for them. A goroutine blocked in each peer's Read cost the generator a
// wake-up and a second, empty read per packet, and the node the kernel
// work of waking it, charged to the node's send on loopback. Here each
// goroutine polls its set every recvTick: one read per ready socket (the
// set is level-triggered, so a second datagram waits a tick, not an
// empty read), no goroutine parked on any socket.
func receive(ctx context.Context, peers []*litePeer) (func(), error) {
	shards := min(runtime.GOMAXPROCS(0), max(len(peers), 1))
	fds := make([]int, len(peers))
	for i, p := range peers {
		p.handOver()
		rc, err := p.conn.SyscallConn()
		if err != nil {
			return nil, err
		}
		if err := rc.Control(func(fd uintptr) { fds[i] = int(fd) }); err != nil {
			return nil, err
		}
	}
	var wg sync.WaitGroup
	for s := range shards {
		ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			return nil, err
		}
		for i := s; i < len(peers); i += shards {
			ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)}
			if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fds[i], &ev); err != nil {
				_ = unix.Close(ep)
				return nil, err
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer unix.Close(ep)
			var events [256]unix.EpollEvent
			buf := make([]byte, 1600)
			for ctx.Err() == nil {
				n, err := unix.EpollWait(ep, events[:], 0)
				if err != nil && !errors.Is(err, unix.EINTR) {
					return
				}
				for _, ev := range events[:max(n, 0)] {
					if m, err := unix.Read(fds[ev.Fd], buf); err == nil && m > 0 {
						peers[ev.Fd].handle(buf[:m])
					}
				}
				if n < len(events) {
					time.Sleep(recvTick)
				}
			}
		}()
	}
	return wg.Wait, nil
}
