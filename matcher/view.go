package matcher

import (
	"cmp"
	"hash/maphash"
	"slices"
	"sync"
	"time"
)

// view is the pairing node's copy of the shared queue, so that a pass
// reads only what changed instead of the whole queue.
//
// Every change to the queue in Redis (a join, a leave, a ghost dropped)
// takes the next number of one counter in the same script, and reaches
// the view with it: from the reply when this node made it, from the
// node's pub/sub announcement otherwise. The view applies changes in
// that order, so a stale view can only miss what is still on its way:
//
//   - a number that does not come within gapWait (a lost announcement,
//     a lost reply), or a counter in Redis ahead of the view for as long
//     (the last announcement lost), sends it back to Redis for the whole
//     queue (a resync);
//   - a counter that starts again (Redis came back empty) does too.
//
// Claims are not numbered: only the holder of the pairing lease claims,
// and it applies its own. A claim made elsewhere (two holders for a
// moment) leaves tickets here that are gone in Redis; pairing one costs
// a failed claim, whose reply removes it. Claims check Redis, so the
// view never decides who is matched, only who is tried.
type view struct {
	mu    sync.Mutex
	state viewState
	epoch uint64 // bumped when a resync starts or the view is dropped

	applied int64            // every change up to this number is reflected
	pending map[int64]change // changes past a gap, by number
	want    int64            // the highest number known to exist
	gapAt   time.Time        // since when applied < want (zero: no gap)
	buf     []change         // changes that came while a resync was out

	byMode map[string]map[string]entry
	modeOf map[string]string
	owners map[string]int // tickets per node, for the liveness checks

	// gapTimer, when set, is called (with mu held) when a gap opens:
	// whoever resyncs must hear of it after gapWait even if nothing else
	// happens.
	gapTimer func()
}

type viewState int

const (
	viewOff     viewState = iota // not the pairing node, or no feed: nothing kept
	viewStale                    // must resync before it is used
	viewSyncing                  // a resync is out: changes are held for it
	viewLive
)

// gapWait is how long a missing change number may stay missing before
// the view gives up on it and reads the whole queue again. Numbers come
// out of order only by a hair (a reply on one connection, an
// announcement on another); a CPU-starved node may take longer, and a
// resync costs one read of the queue, so this errs on the long side.
const gapWait = 500 * time.Millisecond

type entry struct {
	t   Ticket
	seq int64 // the change that put it here
}

// change is one numbered change to the queue.
type change struct {
	seq int64
	op  byte     // opAdd, opRemove, opDrop
	t   Ticket   // opAdd
	ids []string // opRemove, opDrop
}

const (
	opAdd    = 'a'
	opRemove = 'r'
	opDrop   = 'd'
)

func (v *view) resetLocked() {
	v.applied, v.want, v.gapAt = 0, 0, time.Time{}
	v.pending, v.buf = nil, nil
	v.byMode, v.modeOf, v.owners = nil, nil, nil
}

// off drops everything: this node no longer pairs.
func (v *view) off() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.state = viewOff
	v.epoch++
	v.resetLocked()
}

// invalidate makes the next pass read the whole queue again.
func (v *view) invalidate() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.invalidateLocked()
}

func (v *view) invalidateLocked() {
	if v.state == viewOff {
		return
	}
	v.state = viewStale
	v.epoch++
	v.resetLocked()
}

// begin starts a resync: from now until install, changes are held.
func (v *view) begin() uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.state = viewSyncing
	v.epoch++
	v.resetLocked()
	return v.epoch
}

// abort ends a resync that failed; the next pass tries again.
func (v *view) abort(epoch uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.epoch == epoch {
		v.invalidateLocked()
	}
}

// install sets the queue a resync read (as of change seq) and applies
// what came meanwhile. False if the view was dropped or another resync
// started since begin: the snapshot may be older than what it knows.
func (v *view) install(epoch uint64, seq int64, tickets []Ticket, now time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.epoch != epoch || v.state != viewSyncing {
		return false
	}
	held := v.buf
	v.resetLocked()
	v.state = viewLive
	v.byMode = map[string]map[string]entry{}
	v.modeOf = map[string]string{}
	v.owners = map[string]int{}
	v.applied, v.want = seq, seq
	for _, t := range tickets {
		v.putLocked(entry{t: t, seq: seq})
	}
	slices.SortFunc(held, func(a, b change) int { return cmp.Compare(a.seq, b.seq) })
	for _, c := range held {
		v.changeLocked(c, now)
	}
	return true
}

// mark is where the view stands, for observe.
type mark struct {
	epoch   uint64
	applied int64
}

func (v *view) mark() mark {
	v.mu.Lock()
	defer v.mu.Unlock()
	return mark{v.epoch, v.applied}
}

// accepting reports whether a change would be used (an announcement
// need not be decoded otherwise).
func (v *view) accepting() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.state == viewLive || v.state == viewSyncing
}

// live reports whether passes can use the view as it is.
func (v *view) live() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.state == viewLive
}

// change applies (or holds) one numbered change. It reports whether it
// made strangers pairable: c itself, an add, applied now (self); adds
// held behind it, applied with it (others). Whoever applies an add wakes
// the pass, except a join's own add, whose Join pokes its matcher.
func (v *view) change(c change, now time.Time) (self, others bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch v.state {
	case viewSyncing:
		v.buf = append(v.buf, c)
	case viewLive:
		return v.changeLocked(c, now)
	}
	return false, false
}

func (v *view) changeLocked(c change, now time.Time) (self, others bool) {
	switch {
	case v.state != viewLive:
		return false, false
	case c.seq <= v.applied:
		// Had it already. (A Redis that restarted empty numbers from 1
		// again, and such changes are taken for old ones: the restart is
		// told otherwise - the lease is gone, the subscription comes
		// back, the counter is behind - and the view read again.)
		return false, false
	case c.seq > v.applied+1:
		if v.pending == nil {
			v.pending = map[int64]change{}
		}
		v.pending[c.seq] = c
		v.note(c.seq, now)
		return false, false
	}
	self = v.applyLocked(c)
	v.applied = c.seq
	for {
		next, ok := v.pending[v.applied+1]
		if !ok {
			break
		}
		delete(v.pending, next.seq)
		others = v.applyLocked(next) || others
		v.applied = next.seq
	}
	if v.applied >= v.want && len(v.pending) == 0 {
		v.gapAt = time.Time{}
	}
	return self, others
}

// note records that change seq exists; a gap opens if it is not applied.
func (v *view) note(seq int64, now time.Time) {
	v.want = max(v.want, seq)
	if v.want > v.applied && v.gapAt.IsZero() {
		v.gapAt = now
		if v.gapTimer != nil {
			v.gapTimer()
		}
	}
}

// observe takes the counter as Redis reported it, asked when the view
// stood at m: behind m means Redis started again (the counter only grows
// otherwise); ahead of the view opens a gap until the changes come.
func (v *view) observe(seq int64, m mark, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state != viewLive || v.epoch != m.epoch {
		return
	}
	if seq < m.applied {
		v.invalidateLocked()
		return
	}
	if seq > v.applied {
		v.note(seq, now)
	}
}

// gapSince is when the current gap opened (zero: none).
func (v *view) gapSince() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state != viewLive {
		return time.Time{}
	}
	return v.gapAt
}

// needsSync reports whether the next pass must read the whole queue: the
// view is not built, or a change has been missing for gapWait.
func (v *view) needsSync(now time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch v.state {
	case viewLive:
		if !v.gapAt.IsZero() && now.Sub(v.gapAt) >= gapWait {
			v.invalidateLocked()
			return true
		}
		return false
	case viewSyncing:
		return false
	}
	return true
}

func (v *view) applyLocked(c change) bool {
	switch c.op {
	case opAdd:
		v.putLocked(entry{t: c.t, seq: c.seq})
		return true
	case opRemove, opDrop:
		for _, id := range c.ids {
			v.deleteLocked(id, c.seq)
		}
	}
	return false
}

func (v *view) putLocked(e entry) {
	v.deleteLocked(e.t.Session, e.seq)
	q := v.byMode[e.t.Mode]
	if q == nil {
		q = map[string]entry{}
		v.byMode[e.t.Mode] = q
	}
	q[e.t.Session] = e
	v.modeOf[e.t.Session] = e.t.Mode
	v.owners[e.t.Node]++
}

// deleteLocked removes session unless the view holds a newer ticket of
// it than change seq knew about.
func (v *view) deleteLocked(session string, seq int64) {
	mode, ok := v.modeOf[session]
	if !ok {
		return
	}
	e := v.byMode[mode][session]
	if e.seq > seq {
		return
	}
	delete(v.byMode[mode], session)
	delete(v.modeOf, session)
	if v.owners[e.t.Node]--; v.owners[e.t.Node] <= 0 {
		delete(v.owners, e.t.Node)
	}
}

// tickets returns the mode's queue (a copy).
func (v *view) tickets(mode string) []Ticket {
	v.mu.Lock()
	defer v.mu.Unlock()
	q := v.byMode[mode]
	out := make([]Ticket, 0, len(q))
	for _, e := range q {
		out = append(out, e.t)
	}
	return out
}

// modeAndOwner returns where session waits as the view knows it.
func (v *view) modeAndOwner(session string) (mode, owner string, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	mode, ok = v.modeOf[session]
	if !ok {
		return "", "", false
	}
	return mode, v.byMode[mode][session].t.Node, true
}

// claimed drops the tickets of a claim this node won.
func (v *view) claimed(ids ...string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state != viewLive {
		return
	}
	for _, id := range ids {
		v.deleteLocked(id, v.applied)
	}
}

// gone drops a ticket a claim found missing from Redis when change seq
// was the latest: unless the view has it from a later change, the view
// was stale.
func (v *view) gone(id string, seq int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state == viewLive {
		v.deleteLocked(id, seq)
	}
}

// ownerNodes lists the nodes whose tickets wait here, except self.
func (v *view) ownerNodes(self string) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]string, 0, len(v.owners))
	for n := range v.owners {
		if n != self {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// ticketsOf lists (owner, session) pairs of the tickets of nodes.
func (v *view) ticketsOf(nodes []string) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for _, q := range v.byMode {
		for id, e := range q {
			if slices.Contains(nodes, e.t.Node) {
				out = append(out, e.t.Node, id)
			}
		}
	}
	return out
}

// pairMemo is what the pairing node knows of who met whom: the pairs it
// claimed, and those a claim was refused for. Redis has the record; this
// answers Met during a pass without a round trip. A pair it does not
// know (another node claimed it) is refused by the claim, and then known.
type pairMemo struct {
	mu      sync.Mutex
	seed    maphash.Seed
	until   map[uint64]int64 // pair hash -> end of the window, unix ns
	lastNow int64
	pruneAt int
}

func newPairMemo() *pairMemo {
	return &pairMemo{seed: maphash.MakeSeed(), until: map[uint64]int64{}, pruneAt: 1024}
}

// key hashes the unordered pair. A collision (one in 2^64 per pair)
// would only keep one pair apart as if they had met.
func (p *pairMemo) key(a, b string) uint64 {
	if a > b {
		a, b = b, a
	}
	var h maphash.Hash
	h.SetSeed(p.seed)
	h.WriteString(a)
	h.WriteByte(0)
	h.WriteString(b)
	return h.Sum64()
}

func (p *pairMemo) add(a, b string, until, now time.Time) {
	if !until.After(now) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastNow = max(p.lastNow, now.UnixNano())
	p.until[p.key(a, b)] = until.UnixNano()
	if len(p.until) >= p.pruneAt {
		for k, u := range p.until {
			if u <= p.lastNow {
				delete(p.until, k)
			}
		}
		p.pruneAt = max(2*len(p.until), 1024)
	}
}

func (p *pairMemo) met(a, b string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastNow = max(p.lastNow, now.UnixNano())
	k := p.key(a, b)
	u, ok := p.until[k]
	if !ok {
		return false
	}
	if now.UnixNano() >= u {
		delete(p.until, k)
		return false
	}
	return true
}
