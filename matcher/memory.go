package matcher

import (
	"context"
	"sync"
	"time"
)

// MemoryStore is the single-node Store: everything under one mutex.
type MemoryStore struct {
	mu      sync.Mutex
	byMode  map[string]map[string]Ticket // mode -> session -> ticket
	modeOf  map[string]string            // session -> mode
	met     map[pairKey]time.Time        // unordered pair -> until
	lastNow time.Time                    // newest matcher time seen; see prune
	pruneAt int                          // prune when met grows to this
}

type pairKey struct{ a, b string }

func keyOf(a, b string) pairKey {
	if a > b {
		a, b = b, a
	}
	return pairKey{a, b}
}

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{
		byMode:  map[string]map[string]Ticket{ModeVideo: {}, ModeText: {}},
		modeOf:  map[string]string{},
		met:     map[pairKey]time.Time{},
		pruneAt: 1024,
	}
}

// Add implements Store.
func (m *MemoryStore) Add(_ context.Context, t Ticket) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.modeOf[t.Session]; ok {
		return ErrAlreadyWaiting
	}
	q := m.byMode[t.Mode]
	if q == nil {
		q = map[string]Ticket{}
		m.byMode[t.Mode] = q
	}
	q[t.Session] = t
	m.modeOf[t.Session] = t.Mode
	m.saw(t.JoinedAt)
	return nil
}

// Remove implements Store.
func (m *MemoryStore) Remove(_ context.Context, session string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.removeLocked(session), nil
}

func (m *MemoryStore) removeLocked(session string) bool {
	mode, ok := m.modeOf[session]
	if !ok {
		return false
	}
	delete(m.byMode[mode], session)
	delete(m.modeOf, session)
	return true
}

// Waiting implements Store.
func (m *MemoryStore) Waiting(_ context.Context, mode string) ([]Ticket, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	q := m.byMode[mode]
	out := make([]Ticket, 0, len(q))
	for _, t := range q {
		out = append(out, t)
	}
	return out, nil
}

// Claim implements Store: both tickets go, or neither.
func (m *MemoryStore) Claim(_ context.Context, a, b string, now, metUntil time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.saw(now)
	if a == b {
		return ErrNotWaiting
	}
	if _, ok := m.modeOf[a]; !ok {
		return ErrNotWaiting
	}
	if _, ok := m.modeOf[b]; !ok {
		return ErrNotWaiting
	}
	m.removeLocked(a)
	m.removeLocked(b)
	if !metUntil.After(m.lastNow) {
		// Already over (avoid-repeat off): recording it would only cost memory.
		return nil
	}
	m.met[keyOf(a, b)] = metUntil
	if len(m.met) >= m.pruneAt {
		m.prune()
	}
	return nil
}

// saw advances the store's idea of the time. The store has no clock of its
// own (tests drive the matcher with a fake one); the matcher's times reach
// it as join times and as Met's now, in the same clock domain as metUntil.
func (m *MemoryStore) saw(t time.Time) {
	if t.After(m.lastNow) {
		m.lastNow = t
	}
}

// prune drops met pairs whose window has closed. It runs when the map has
// doubled since the last prune, so its cost is amortised over the claims
// that grew it and memory stays within twice the live windows.
func (m *MemoryStore) prune() {
	for k, until := range m.met {
		if !m.lastNow.Before(until) {
			delete(m.met, k)
		}
	}
	m.pruneAt = max(2*len(m.met), 1024)
}

// Met implements Store.
func (m *MemoryStore) Met(_ context.Context, a, b string, now time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.saw(now)
	until, ok := m.met[keyOf(a, b)]
	if !ok {
		return false, nil
	}
	if !now.Before(until) {
		delete(m.met, keyOf(a, b))
		return false, nil
	}
	return true, nil
}

// Counts implements Store.
func (m *MemoryStore) Counts(_ context.Context) (map[string]int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int{ModeVideo: 0, ModeText: 0}
	for mode, q := range m.byMode {
		out[mode] = len(q)
	}
	return out, nil
}
