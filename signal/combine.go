package signal

// Changes to who is where (queue, leave, next, a store's answer to a
// join, a pairing pass) need the hub's lock for writing. When sockets
// take it one by one, each release hands the lock to the next waiter
// through the scheduler, and on a busy machine a waiter that is slow to
// run holds up everyone behind it: at 1,000 matches a second with the
// two cores shared, goroutines of one node spent 11 to 113 seconds a
// second waiting in line for it (docs/benchmarks.md). So these changes
// are combined instead: a caller queues its change, and whoever finds no
// one combining takes the lock once and applies every change queued
// meanwhile, in the order they came, while the others wait for theirs
// to be done. Each caller still returns only once its change is applied,
// so a socket's frames keep their order.

import "sync"

// combiner queues the changes waiting for the hub's lock.
type combiner struct {
	mu     sync.Mutex
	q      []*change
	active bool // a goroutine is combining
	pool   sync.Pool
}

type change struct {
	f    func()
	done chan bool // true: take over combining
}

// maxRounds bounds how many batches one combiner applies before it hands
// the job to a waiter, so a socket reader that combines is not kept from
// its own socket for long under a steady stream of changes.
const maxRounds = 4

// exclusive runs f with h.mu held for writing, combined with the changes
// other goroutines queued meanwhile; the effects they decided run after
// the lock is let go (unlock), in order. f must not take h.mu itself.
func (h *Hub) exclusive(f func()) {
	c := &h.combine
	ch, _ := c.pool.Get().(*change)
	if ch == nil {
		ch = &change{done: make(chan bool, 1)}
	}
	ch.f = f
	c.mu.Lock()
	c.q = append(c.q, ch)
	lead := !c.active
	c.active = true
	c.mu.Unlock()
	if !lead {
		lead = <-ch.done
	}
	if lead {
		h.combineRounds(ch)
	}
	ch.f = nil
	c.pool.Put(ch)
}

// combineRounds applies queued changes, own among them, until the queue
// is empty, or until maxRounds batches have gone and own is done: then
// the first waiter takes over combining.
func (h *Hub) combineRounds(own *change) {
	c := &h.combine
	ownDone := false
	for round := 0; ; round++ {
		c.mu.Lock()
		if len(c.q) == 0 {
			c.active = false
			c.mu.Unlock()
			return
		}
		if round >= maxRounds && ownDone {
			next := c.q[0]
			c.mu.Unlock()
			next.done <- true
			return
		}
		batch := c.q
		c.q = nil
		c.mu.Unlock()
		h.mu.Lock()
		for _, ch := range batch {
			ch.f()
		}
		h.unlock()
		for _, ch := range batch {
			if ch == own {
				ownDone = true
				continue
			}
			ch.done <- false
		}
	}
}
