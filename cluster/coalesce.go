package cluster

import (
	"time"
)

// lingering holds resume records (and forgets) for a short while before
// they are written, keyed by token: a session that goes waiting → room →
// idle within the linger costs one SET instead of three. Only the newest
// operation on a token is written (a record is a whole value, SET
// overwrites, and a Forget after a Save makes the Save moot), and it is
// written by the earliest deadline of the operations it replaced, so
// what Redis holds is never older than the session's state linger ago.
// Forgets and urgent records (a session that just lost its socket and may
// resume on another node at once) are due at once.
//
// Only the write loop touches it.
type lingering struct {
	linger  time.Duration
	byToken map[string]*lingerItem
}

type lingerItem struct {
	it  item
	due time.Time
}

func newLingering(linger time.Duration) *lingering {
	return &lingering{linger: linger, byToken: map[string]*lingerItem{}}
}

func (it item) token() string {
	if it.rec != nil {
		return it.rec.Token
	}
	return it.forget
}

// add takes a record or a forget queued at now.
func (l *lingering) add(it item, now time.Time) {
	due := now.Add(l.linger)
	if it.rec == nil || it.rec.Urgent {
		due = now
	}
	tok := it.token()
	if p := l.byToken[tok]; p != nil {
		p.it = it
		if due.Before(p.due) {
			p.due = due
		}
		return
	}
	l.byToken[tok] = &lingerItem{it: it, due: due}
}

// take removes and returns what is due at now (everything if all).
func (l *lingering) take(now time.Time, all bool) []item {
	var out []item
	for tok, p := range l.byToken {
		if all || !p.due.After(now) {
			out = append(out, p.it)
			delete(l.byToken, tok)
		}
	}
	return out
}

// next is the earliest deadline of what lingers.
func (l *lingering) next() (time.Time, bool) {
	var first time.Time
	for _, p := range l.byToken {
		if first.IsZero() || p.due.Before(first) {
			first = p.due
		}
	}
	return first, !first.IsZero()
}

// perPublish bounds the envelopes of one batch message, so that the
// retries after an outage do not make one message big enough to trip
// Redis's output buffer limit for a subscriber.
const perPublish = 64

// publish is one SPUBLISH of a flush: the envelopes at idx of the batch,
// all for node, in order; more than one go as one batch message.
type publish struct {
	node string
	idx  []int
}

// plan groups a flush's envelopes (the batch entries that are neither
// records nor forgets) into publishes: one per destination node, in the
// order of each node's first envelope (up to perPublish envelopes each),
// keeping every node's envelopes in their order; one per envelope for a node that single says reads only
// the single-envelope form.
func plan(batch []held, single func(node string) bool) []publish {
	var out []publish
	at := map[string]int{} // node → its publish in out
	for i, h := range batch {
		if h.it.rec != nil || h.it.forget != "" {
			continue
		}
		node := h.it.node
		if single(node) {
			out = append(out, publish{node: node, idx: []int{i}})
			continue
		}
		if j, ok := at[node]; ok && len(out[j].idx) < perPublish {
			out[j].idx = append(out[j].idx, i)
			continue
		}
		at[node] = len(out)
		out = append(out, publish{node: node, idx: []int{i}})
	}
	return out
}
