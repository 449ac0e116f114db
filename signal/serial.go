package signal

import "sync"

// group counts goroutines and waits for them. Unlike a WaitGroup it may
// start one while another goroutine waits (a session ending during
// Shutdown still closes its SFU room), so Add never races Wait.
type group struct {
	mu   sync.Mutex
	n    int
	idle *sync.Cond
}

func (g *group) run(f func()) {
	g.mu.Lock()
	if g.idle == nil {
		g.idle = sync.NewCond(&g.mu)
	}
	g.n++
	g.mu.Unlock()
	go func() {
		defer g.done()
		f()
	}()
}

func (g *group) done() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n--; g.n == 0 {
		g.idle.Broadcast()
	}
}

// wait returns once no goroutine of the group runs.
func (g *group) wait() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.n > 0 {
		g.idle.Wait()
	}
}

// serial runs store calls one after another per session, each session's
// on a goroutine of its own that lives only while it has work. A call
// waiting on a stalled Redis then holds up neither the hub lock nor the
// socket reader (the next frame is read and answered meanwhile), and a
// session's leave still runs before its next join.
type serial struct {
	mu     sync.Mutex
	queues map[string][]func() // key present: its goroutine is running
	g      group
}

func newSerial() *serial { return &serial{queues: map[string][]func(){}} }

// do runs f after everything queued for key before it.
func (s *serial) do(key string, f func()) {
	s.mu.Lock()
	q, running := s.queues[key]
	s.queues[key] = append(q, f)
	if !running {
		s.g.run(func() { s.drain(key) })
	}
	s.mu.Unlock()
}

func (s *serial) drain(key string) {
	for {
		s.mu.Lock()
		q := s.queues[key]
		if len(q) == 0 {
			delete(s.queues, key)
			s.mu.Unlock()
			return
		}
		f := q[0]
		q[0] = nil
		s.queues[key] = q[1:]
		s.mu.Unlock()
		f()
	}
}

// wait returns once every queued call has run.
func (s *serial) wait() { s.g.wait() }
