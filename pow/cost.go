package pow

import (
	"math"
	"sync"
	"time"
)

// costs keeps a score per address that decays by half every halfLife
// and grows by one for each challenge asked for and each join made on a
// pass: roughly "joins in the last half-life". The price of the next
// challenge doubles for every `step` points above `free`. Memory is
// bounded: past max addresses the faded ones go first, then any.
type costs struct {
	base, max int64
	free      float64
	step      float64
	halfLife  time.Duration
	maxAddrs  int

	mu     sync.Mutex
	scores map[string]score
}

type score struct {
	v  float64
	at time.Time
}

// value is the score at now.
func (s score) value(now time.Time, halfLife time.Duration) float64 {
	dt := now.Sub(s.at)
	if dt <= 0 {
		return s.v
	}
	return s.v * math.Exp2(-float64(dt)/float64(halfLife))
}

// add counts one more event for addr and returns the new score.
func (c *costs) add(addr string, now time.Time) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.scores[addr]
	if !ok && len(c.scores) >= c.maxAddrs {
		c.evict(now)
	}
	v := s.value(now, c.halfLife) + 1
	c.scores[addr] = score{v: v, at: now}
	return v
}

// evict makes room: every address whose score has faded below one goes;
// if none has, an arbitrary one does (an attacker able to flood the table
// from that many addresses gains little by resetting one of them).
func (c *costs) evict(now time.Time) {
	for k, s := range c.scores {
		if s.value(now, c.halfLife) < 1 {
			delete(c.scores, k)
		}
	}
	if len(c.scores) < c.maxAddrs {
		return
	}
	for k := range c.scores {
		delete(c.scores, k)
		return
	}
}

// price is the maxnumber of a challenge for an address at score v.
func (c *costs) price(v float64) int64 {
	over := (v - c.free) / c.step
	if over <= 0 {
		return c.base
	}
	p := float64(c.base) * math.Exp2(over)
	if p >= float64(c.max) {
		return c.max
	}
	return int64(p)
}
