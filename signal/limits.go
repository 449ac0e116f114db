package signal

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/wire"
)

// class groups message types that share a budget.
type class int

const (
	classOther  class = iota
	classSignal       // offer/answer/candidate: trickle ICE comes in bursts
	classChat         // chat
	classQueue        // queue/next/report: what skip bots hammer
)

func classOf(msgType string) class {
	switch msgType {
	case wire.TypeOffer, wire.TypeAnswer, wire.TypeCandidate:
		return classSignal
	case wire.TypeChat:
		return classChat
	case wire.TypeQueue, wire.TypeNext, wire.TypeReport:
		return classQueue
	}
	return classOther
}

// sessionLimits are one session's token buckets; they live as long as the
// session, so reconnecting does not refill them.
type sessionLimits struct {
	all     *rate.Limiter
	byClass [4]*rate.Limiter
	// joins: queue and next per minute, what a skip bot spends.
	joins *rate.Limiter
	// notice limits how often rate_limited errors are sent back, so a
	// flood does not turn into a flood of errors.
	notice *rate.Limiter
}

// perMinute is a bucket of n that refills n a minute.
func perMinute(n int) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(float64(n)/60), n)
}

func newSessionLimits(l configs.Limits) *sessionLimits {
	return &sessionLimits{
		all: rate.NewLimiter(rate.Limit(l.MessageRate), l.MessageBurst),
		byClass: [4]*rate.Limiter{
			classOther:  rate.NewLimiter(rate.Limit(l.MessageRate), l.MessageBurst),
			classSignal: rate.NewLimiter(rate.Limit(l.SignalRate), l.SignalBurst),
			classChat:   rate.NewLimiter(rate.Limit(l.ChatRate), l.ChatBurst),
			classQueue:  rate.NewLimiter(rate.Limit(l.QueueRate), l.QueueBurst),
		},
		joins:  perMinute(l.JoinsPerMinute),
		notice: rate.NewLimiter(1, 3),
	}
}

// allow spends one token of the message's class and of the overall budget.
func (s *sessionLimits) allow(now time.Time, c class) bool {
	return s.byClass[c].AllowN(now, 1) && s.all.AllowN(now, 1)
}

// ipTable tracks per-IP budgets: concurrent sockets, connect rate and an
// aggregate message rate shared by every session from that address.
type ipTable struct {
	mu     sync.Mutex
	limits configs.Limits
	ips    map[string]*ipState
}

type ipState struct {
	conns    int
	sessions int
	connect  *rate.Limiter
	messages *rate.Limiter
	joins    *rate.Limiter
	lastSeen time.Time
}

func newIPTable(l configs.Limits) *ipTable {
	return &ipTable{limits: l, ips: make(map[string]*ipState)}
}

func (t *ipTable) get(ip string, now time.Time) *ipState {
	st := t.ips[ip]
	if st == nil {
		st = &ipState{
			connect:  rate.NewLimiter(rate.Limit(t.limits.ConnectRatePerIP), t.limits.ConnectBurstPerIP),
			messages: rate.NewLimiter(rate.Limit(t.limits.IPMessageRate), t.limits.IPMessageBurst),
			joins:    perMinute(t.limits.IPJoinsPerMinute),
		}
		t.ips[ip] = st
	}
	st.lastSeen = now
	return st
}

// acquire admits a new socket from ip, or says why not.
func (t *ipTable) acquire(ip string, now time.Time) (ok bool, reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.get(ip, now)
	if st.conns >= t.limits.ConnectionsPerIP {
		return false, "too many connections from your address"
	}
	if !st.connect.AllowN(now, 1) {
		return false, "connecting too fast"
	}
	st.conns++
	return true, ""
}

func (t *ipTable) release(ip string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st := t.ips[ip]; st != nil && st.conns > 0 {
		st.conns--
		st.lastSeen = now
	}
}

// addSession counts a new session from ip, unless ip has its fill.
func (t *ipTable) addSession(ip string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.get(ip, now)
	if st.sessions >= t.limits.SessionsPerIP {
		return false
	}
	st.sessions++
	return true
}

func (t *ipTable) dropSession(ip string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st := t.ips[ip]; st != nil && st.sessions > 0 {
		st.sessions--
		st.lastSeen = now
	}
}

// allowJoin spends one of ip's queue joins for this minute.
func (t *ipTable) allowJoin(ip string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.get(ip, now).joins.AllowN(now, 1)
}

func (t *ipTable) allowMessage(ip string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.get(ip, now).messages.AllowN(now, 1)
}

// sweep forgets addresses with no sockets that were idle for idleFor, so
// the table stays bounded.
func (t *ipTable) sweep(now time.Time, idleFor time.Duration) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for ip, st := range t.ips {
		if st.conns == 0 && st.sessions == 0 && now.Sub(st.lastSeen) > idleFor {
			delete(t.ips, ip)
			n++
		}
	}
	return n
}
