package cluster

import (
	"time"

	"github.com/duetchat/duet/signal"
)

// outbox holds what could not be written yet, so a Redis stall or restart
// costs delay instead of loss. An envelope is held when the pipeline
// failed (Redis away) or when its SPUBLISH reached no subscriber (the
// destination's inbox subscription is not back yet after a Redis
// restart, or the node is gone); it is retried in order until it is
// delivered or it has waited hold, and then it is given up and reported,
// so its sender can be told instead of losing it silently.
//
// Only the write loop touches an outbox.
type outbox struct {
	hold time.Duration
	// waiting per destination node, in publish order; a new envelope for
	// a node that has some waiting joins the end, so order is kept.
	envs map[string][]held
	// records and forgets (SET/DEL are idempotent) in order.
	recs []held
}

type held struct {
	it    item
	seq   uint64
	since time.Time
}

func newOutbox(hold time.Duration) *outbox {
	return &outbox{hold: hold, envs: map[string][]held{}}
}

func (o *outbox) empty() bool { return len(o.envs) == 0 && len(o.recs) == 0 }

// holding reports whether envelopes for node wait already.
func (o *outbox) holding(node string) bool { return len(o.envs[node]) > 0 }

func (o *outbox) keep(h held) {
	if h.it.rec != nil || h.it.forget != "" {
		o.recs = append(o.recs, h)
		return
	}
	o.envs[h.it.node] = append(o.envs[h.it.node], h)
}

// take empties the outbox for a retry: records first, then each node's
// envelopes in order.
func (o *outbox) take() []held {
	out := o.recs
	o.recs = nil
	for node, list := range o.envs {
		out = append(out, list...)
		delete(o.envs, node)
	}
	return out
}

// expire gives up on what has waited longer than hold.
func (o *outbox) expire(now time.Time, lost func(signal.Envelope)) (n int) {
	keep := func(list []held, isEnv bool) []held {
		kept := list[:0]
		for _, h := range list {
			if now.Sub(h.since) < o.hold {
				kept = append(kept, h)
				continue
			}
			n++
			if isEnv {
				lost(h.it.env)
			}
		}
		return kept
	}
	o.recs = keep(o.recs, false)
	for node, list := range o.envs {
		if list = keep(list, true); len(list) == 0 {
			delete(o.envs, node)
		} else {
			o.envs[node] = list
		}
	}
	return n
}

// seen drops envelopes that arrive twice: a pipeline that failed after
// Redis had taken some of its commands is sent again whole. It keeps the
// sequence numbers of the last window envelopes from each sending
// process; anything older than that is long settled and dropped.
type seen struct {
	bySrc map[string]*window
}

const seenWindow = 1 << 13

type window struct {
	top  uint64
	have map[uint64]struct{}
}

func newSeen() *seen { return &seen{bySrc: map[string]*window{}} }

// first reports whether (src, seq) arrives for the first time. Envelopes
// without a sequence (an older node) always pass.
func (s *seen) first(src string, seq uint64) bool {
	if src == "" || seq == 0 {
		return true
	}
	w := s.bySrc[src]
	if w == nil {
		w = &window{have: map[uint64]struct{}{}}
		s.bySrc[src] = w
	}
	if w.top > seenWindow && seq <= w.top-seenWindow {
		return false
	}
	if _, dup := w.have[seq]; dup {
		return false
	}
	w.have[seq] = struct{}{}
	if seq > w.top {
		w.top = seq
	}
	if len(w.have) > 2*seenWindow {
		for q := range w.have {
			if q+seenWindow <= w.top {
				delete(w.have, q)
			}
		}
	}
	return true
}
