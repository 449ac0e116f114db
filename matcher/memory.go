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
	lastNow time.Time                    // newest time seen by Met
	pruneAt int
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
func (m *MemoryStore) Claim(_ context.Context, a, b string, metUntil time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
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
	m.met[keyOf(a, b)] = metUntil
	if len(m.met) >= m.pruneAt {
		m.prune()
	}
	return nil
}

// prune drops met pairs that expired. The store has no clock of its own:
// it uses the latest "now" the matcher passed to Met, which is in the same
// clock domain as metUntil. It runs when the map doubles, so its cost is
// amortised over the claims that grew it.
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
	if now.After(m.lastNow) {
		m.lastNow = now
	}
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
