package sfu

import (
	"sync"
)

// Decrypting and forwarding on the socket reader itself left the socket
// undrained whenever the reader waited for a CPU: on the 2-core bench box
// at 120 rooms its 4 MB receive buffer overflowed in some runs (up to 3%
// of the media lost, where pion's own reader, which only copies into
// deep buffers, lost none), and operators' default net.core.rmem_max is
// 20 times smaller. So the reader only checks, copies and queues a proven
// leg's packet; a worker decrypts and forwards it. Each leg stays on one
// worker, which keeps its packets in order; there is a worker per CPU. A
// worker that is busy drains its whole queue per wake-up, so under load
// the hand-off costs a lock, not a wake-up, per packet.

// cutQueueLimit bounds what one worker has queued: up to 12 MB, which
// only a stall fills; on the bench box a node starved of CPU for a moment
// at 120 rooms overflowed 2,048 (1-2% lost with one worker) and not
// 8,192 (0 lost in 5 runs). Past it, packets are dropped and counted, as
// a full socket buffer would drop them.
const cutQueueLimit = 8192

type cutItem struct {
	sc *shortcut
	rb *relayBuffer // the armed stream's buffer, looked up by the reader
	b  []byte
}

// cutWorker forwards the packets queued for its legs.
type cutWorker struct {
	mu   sync.Mutex
	q    []cutItem
	free [][]byte // buffers of packets done with
	wake chan struct{}
}

func newCutWorker() *cutWorker {
	return &cutWorker{wake: make(chan struct{}, 1)}
}

// push queues a copy of p for sc and its stream's buffer rb, and reports
// whether there was room.
func (w *cutWorker) push(sc *shortcut, rb *relayBuffer, p []byte) bool {
	w.mu.Lock()
	if len(w.q) >= cutQueueLimit {
		w.mu.Unlock()
		return false
	}
	var b []byte
	if n := len(w.free); n > 0 {
		b, w.free = w.free[n-1], w.free[:n-1]
	} else {
		b = make([]byte, 0, 1500)
	}
	w.q = append(w.q, cutItem{sc: sc, rb: rb, b: append(b[:0], p...)})
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default: // already told
	}
	return true
}

// run forwards until done is closed; count learns each verdict.
func (w *cutWorker) run(done <-chan struct{}, count func(verdict)) {
	var batch []cutItem
	for {
		select {
		case <-w.wake:
		case <-done:
			return
		}
		for {
			w.mu.Lock()
			batch, w.q = w.q, batch[:0]
			w.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			for _, it := range batch {
				count(it.sc.open(it.rb, it.b))
			}
			w.mu.Lock()
			for i := range batch {
				w.free = append(w.free, batch[i].b)
				batch[i] = cutItem{}
			}
			w.mu.Unlock()
		}
	}
}
