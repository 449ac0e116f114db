package turn

import (
	"net"
	"sync"
	"time"
)

// Gate refuses credentials that check out but must no longer work: their
// session is banned, or the address using them is. It is asked on every
// authenticated request (allocate, refresh, permission, channel bind), so
// it must answer from memory.
type Gate interface {
	Refused(session string, src net.Addr) bool
}

type openGate struct{}

func (openGate) Refused(string, net.Addr) bool { return false }

// revocations are rooms whose credentials are refused before they expire:
// a credential is minted for one room, and once the room has ended it
// has nothing left to relay. An entry lives as long as a credential
// minted just before the room ended could (the credential TTL).
type revocations struct {
	now func() time.Time
	ttl time.Duration

	mu    sync.Mutex
	rooms map[string]time.Time // room -> when its last credential expires
}

// maxRevoked bounds the set: a node ending 100 rooms a second with a
// one-hour TTL holds 360,000. Past the bound the entries closest to
// expiry go first (they are the least useful).
const maxRevoked = 1 << 20

func newRevocations(now func() time.Time, ttl time.Duration) *revocations {
	return &revocations{now: now, ttl: ttl, rooms: map[string]time.Time{}}
}

func (r *revocations) revoke(room string) {
	if room == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.rooms) >= maxRevoked {
		r.pruneLocked(r.now().Add(r.ttl / 2))
	}
	r.rooms[room] = r.now().Add(r.ttl)
}

func (r *revocations) revoked(room string) bool {
	if room == "" {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	until, ok := r.rooms[room]
	return ok && r.now().Before(until)
}

// prune forgets entries whose credentials have all expired.
func (r *revocations) prune() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pruneLocked(r.now())
}

func (r *revocations) pruneLocked(before time.Time) {
	for room, until := range r.rooms {
		if !until.After(before) {
			delete(r.rooms, room)
		}
	}
}

func (r *revocations) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.rooms)
}
