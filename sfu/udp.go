package sfu

import (
	"fmt"
	"net"
	"strconv"

	"github.com/duetchat/duet/internal/udpbatch"
)

// udpBuffer is the SFU port's socket buffer request each way. Every
// room's media shares the one socket, and pion reads it from a single
// goroutine: at 100 rooms 40,000 datagrams a second arrive, and the
// kernel's default (about 200 KB, ~90 datagrams of video) overflows in
// the few milliseconds that goroutine may wait for a CPU. The kernel caps
// the request at net.core.rmem_max/wmem_max.
const udpBuffer = 4 << 20

// udpBatches is how many batches of 32 datagrams the port may have
// queued behind its sender: 2,048 datagrams, about 50 ms of 100 rooms'
// video. On a busy 2-core box the goroutine in sendmmsg is kept off the
// CPU for milliseconds at a time; with udpbatch's default of 8 (6 ms)
// the forward loops then ran out of batches and wrote one system call
// each, queueing on the socket's write lock behind the sender: 10-80% of
// the writes at 100 rooms, as the box was quieter or busier. Batches
// past the first 8 are made only when a stall first needs them (64 KB
// each).
const udpBatches = 64

// listenUDP binds the SFU's UDP port with large socket buffers and
// batched I/O under pion's ICE mux: the forward loops' writes leave
// together in one sendmmsg (a lone one after at most udpbatch's linger,
// 500µs), and the mux's reader takes every datagram waiting in one
// recvmmsg. On loopback that halves the system-call CPU per datagram
// (internal/udpbatch's BenchmarkWriteRead). With GSO, a track's packets
// next to each other in a batch (one stream's backlog, drained by its
// forward loop in one go) leave as one segmented message: 35-56% of
// the datagrams at 100 rooms, as the box was quieter or busier.
func listenUDP(ip string, port int) (*udpbatch.Conn, error) {
	pc, err := net.ListenPacket("udp4", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("sfu: udp port: %w", err)
	}
	u := pc.(*net.UDPConn)
	_ = u.SetReadBuffer(udpBuffer)
	_ = u.SetWriteBuffer(udpBuffer)
	return udpbatch.New(u, udpbatch.Options{Batches: udpBatches, GSO: true}), nil
}
