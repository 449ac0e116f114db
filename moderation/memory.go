// Package moderation records what strangers report about each other and
// the bans that follow: a session and its hashed address are banned when
// enough different strangers report it within a window, or when an
// operator says so. Memory serves one node; Redis shares both between
// every node on one store.
package moderation

import (
	"context"
	"sync"
	"time"
)

// Report is one stranger reporting another.
type Report struct {
	Room     string
	Reporter string // session id
	Reported string // session id
	Reason   string
	At       time.Time
	// Shield: the reporter's nudity shield had flagged the reported
	// session's video in this room (what the reporter's page says).
	Shield bool `json:",omitempty"`
}

// MemoryStore keeps reports and bans in memory. Reports are bounded (the
// oldest go first) so a report flood cannot grow the node without limit.
type MemoryStore struct {
	mu      sync.Mutex
	max     int
	reports []Report
	bans    map[string]Ban // by id
}

// NewMemoryStore keeps at most max reports.
func NewMemoryStore(max int) *MemoryStore {
	return &MemoryStore{max: max, bans: map[string]Ban{}}
}

// Record stores r.
func (m *MemoryStore) Record(_ context.Context, r Report) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.reports) >= m.max {
		m.reports = append(m.reports[:0], m.reports[1:]...)
	}
	m.reports = append(m.reports, r)
	return nil
}

// Against returns the reports filed against a session, newest first.
func (m *MemoryStore) Against(_ context.Context, session string) ([]Report, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []Report{}
	for i := len(m.reports) - 1; i >= 0; i-- {
		if m.reports[i].Reported == session {
			out = append(out, m.reports[i])
		}
	}
	return out, nil
}

// PutBan stores b (a ban with the same id is replaced).
func (m *MemoryStore) PutBan(_ context.Context, b Ban) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.bans[b.ID] = b
	return nil
}

// FindBan returns the ban in force at now on the session or the address
// hash, the one that lasts longer when both are.
func (m *MemoryStore) FindBan(_ context.Context, session, ipHash string, now time.Time) (Ban, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.prune(now)
	var hits []Ban
	for _, b := range m.bans {
		if b.covers(session, ipHash) {
			hits = append(hits, b)
		}
	}
	found, ok := longest(now, hits...)
	return found, ok, nil
}

// Bans lists the bans in force at now.
func (m *MemoryStore) Bans(_ context.Context, now time.Time) ([]Ban, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.prune(now)
	out := make([]Ban, 0, len(m.bans))
	for _, b := range m.bans {
		out = append(out, b)
	}
	return sortBans(out), nil
}

// LiftBan ends a ban early; false when there is no such ban.
func (m *MemoryStore) LiftBan(_ context.Context, id string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.bans[id]
	delete(m.bans, id)
	return ok, nil
}

func (m *MemoryStore) prune(now time.Time) {
	for id, b := range m.bans {
		if !b.Until.After(now) {
			delete(m.bans, id)
		}
	}
}
