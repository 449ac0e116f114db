package transport

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/duetchat/duet/configs"
)

// PerMinute is a bucket of n that refills n a minute.
func PerMinute(n int) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(float64(n)/60), n)
}

// IPTable tracks per-IP budgets: concurrent sockets, connect rate and an
// aggregate message rate shared by every session from that address.
type IPTable struct {
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

// NewIPTable sizes the table's budgets from l.
func NewIPTable(l configs.Limits) *IPTable {
	return &IPTable{limits: l, ips: make(map[string]*ipState)}
}

func (t *IPTable) get(ip string, now time.Time) *ipState {
	st := t.ips[ip]
	if st == nil {
		st = &ipState{
			connect:  rate.NewLimiter(rate.Limit(t.limits.ConnectRatePerIP), t.limits.ConnectBurstPerIP),
			messages: rate.NewLimiter(rate.Limit(t.limits.IPMessageRate), t.limits.IPMessageBurst),
			joins:    PerMinute(t.limits.IPJoinsPerMinute),
		}
		t.ips[ip] = st
	}
	st.lastSeen = now
	return st
}

// Acquire admits a new socket from ip, or says why not.
func (t *IPTable) Acquire(ip string, now time.Time) (ok bool, reason string) {
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

func (t *IPTable) Release(ip string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st := t.ips[ip]; st != nil && st.conns > 0 {
		st.conns--
		st.lastSeen = now
	}
}

// AddSession counts a new session from ip, unless ip has its fill.
func (t *IPTable) AddSession(ip string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.get(ip, now)
	if st.sessions >= t.limits.SessionsPerIP {
		return false
	}
	st.sessions++
	return true
}

func (t *IPTable) DropSession(ip string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st := t.ips[ip]; st != nil && st.sessions > 0 {
		st.sessions--
		st.lastSeen = now
	}
}

// AllowJoin spends one of ip's queue joins for this minute.
func (t *IPTable) AllowJoin(ip string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.get(ip, now).joins.AllowN(now, 1)
}

func (t *IPTable) AllowMessage(ip string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.get(ip, now).messages.AllowN(now, 1)
}

// Sweep forgets addresses with no sockets that were idle for idleFor, so
// the table stays bounded.
func (t *IPTable) Sweep(now time.Time, idleFor time.Duration) int {
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
