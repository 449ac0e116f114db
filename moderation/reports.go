// Package moderation records what strangers report about each other.
// Bans built on these records arrive with their own issue; the seam is
// here so every backend keeps the same shape.
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
}

// MemoryReports keeps reports in memory, newest last, bounded so a report
// flood cannot grow the node without limit.
type MemoryReports struct {
	mu      sync.Mutex
	max     int
	reports []Report
}

// NewMemoryReports keeps at most max reports (the oldest are dropped).
func NewMemoryReports(max int) *MemoryReports {
	return &MemoryReports{max: max}
}

// Record stores r.
func (m *MemoryReports) Record(_ context.Context, r Report) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.reports) >= m.max {
		m.reports = append(m.reports[:0], m.reports[1:]...)
	}
	m.reports = append(m.reports, r)
	return nil
}

// Against returns the reports filed against a session.
func (m *MemoryReports) Against(session string) []Report {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Report
	for _, r := range m.reports {
		if r.Reported == session {
			out = append(out, r)
		}
	}
	return out
}
