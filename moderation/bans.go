package moderation

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"
)

// Ban keeps a session, an address (by its salted hash, never the address
// itself), or both out of matching until Until.
type Ban struct {
	ID      string    `json:"id"`
	Session string    `json:"session,omitempty"`
	IPHash  string    `json:"ip_hash,omitempty"`
	Reason  string    `json:"reason"`
	By      string    `json:"by"` // ByReports or ByAdmin
	Created time.Time `json:"created"`
	Until   time.Time `json:"until"`
}

// Who decided a ban.
const (
	ByReports = "reports"
	ByAdmin   = "admin"
)

func (b Ban) covers(session, ipHash string) bool {
	return (b.Session != "" && b.Session == session) || (b.IPHash != "" && b.IPHash == ipHash)
}

// longest picks, of the candidates, the ban in force at now that ends
// last: a session may be banned itself and through its address.
func longest(now time.Time, candidates ...Ban) (Ban, bool) {
	var found Ban
	for _, b := range candidates {
		if b.ID != "" && b.Until.After(now) && b.Until.After(found.Until) {
			found = b
		}
	}
	return found, found.ID != ""
}

func sortBans(bs []Ban) []Ban {
	sort.Slice(bs, func(i, j int) bool {
		if !bs[i].Created.Equal(bs[j].Created) {
			return bs[i].Created.After(bs[j].Created)
		}
		return bs[i].ID < bs[j].ID
	})
	return bs
}

// Store keeps reports and bans (MemoryStore, RedisStore).
type Store interface {
	Record(ctx context.Context, r Report) error
	Against(ctx context.Context, session string) ([]Report, error)
	PutBan(ctx context.Context, b Ban) error
	FindBan(ctx context.Context, session, ipHash string, now time.Time) (Ban, bool, error)
	Bans(ctx context.Context, now time.Time) ([]Ban, error)
	LiftBan(ctx context.Context, id string) (bool, error)
}

// Policy says when reports become a ban.
type Policy struct {
	// ReportsToBan reports from as many different sessions within Window
	// ban the reported session and its address for BanDuration.
	ReportsToBan int
	Window       time.Duration
	BanDuration  time.Duration
	// ShieldReportsToBan, when above 0, bans after fewer reports: as many
	// different sessions whose nudity shield had flagged the reported
	// session (Report.Shield).
	ShieldReportsToBan int
}

// Moderator applies a Policy to a Store.
type Moderator struct {
	store  Store
	policy Policy
	now    func() time.Time
	random io.Reader
}

// NewModerator: now and random may be nil (the clock, crypto/rand).
func NewModerator(store Store, p Policy, now func() time.Time, random io.Reader) *Moderator {
	if now == nil {
		now = time.Now
	}
	if random == nil {
		random = rand.Reader
	}
	return &Moderator{store: store, policy: p, now: now, random: random}
}

// ErrBadBan: a ban that names nobody or lasts no time.
var ErrBadBan = errors.New("moderation: a ban needs a session or an address and a duration")

// Report records r against the reported session, whose address hashes to
// reportedIP. When r completes the policy's count of distinct reporters,
// it bans that session and address and returns the ban.
func (m *Moderator) Report(ctx context.Context, r Report, reportedIP string) (*Ban, error) {
	if err := m.store.Record(ctx, r); err != nil {
		return nil, err
	}
	against, err := m.store.Against(ctx, r.Reported)
	if err != nil {
		return nil, err
	}
	since := r.At.Add(-m.policy.Window)
	reporters, shielded := map[string]bool{}, map[string]bool{}
	for _, a := range against {
		if !a.At.Before(since) {
			reporters[a.Reporter] = true
			if a.Shield {
				shielded[a.Reporter] = true
			}
		}
	}
	reason := fmt.Sprintf("%d reports within %s", len(reporters), m.policy.Window)
	if len(reporters) < m.policy.ReportsToBan {
		if m.policy.ShieldReportsToBan <= 0 || len(shielded) < m.policy.ShieldReportsToBan {
			return nil, nil
		}
		reason = fmt.Sprintf("%d nudity reports flagged by the reporters' shields within %s", len(shielded), m.policy.Window)
	}
	if _, ok, err := m.store.FindBan(ctx, r.Reported, "", m.now()); err != nil || ok {
		return nil, err // already banned: further reports change nothing
	}
	b, err := m.Add(ctx, Ban{
		Session: r.Reported, IPHash: reportedIP, By: ByReports, Reason: reason,
	}, m.policy.BanDuration)
	if err != nil {
		return nil, err
	}
	return &b, nil
}

// Add stores a new ban lasting d from now and returns it with its id.
func (m *Moderator) Add(ctx context.Context, b Ban, d time.Duration) (Ban, error) {
	if (b.Session == "" && b.IPHash == "") || d <= 0 {
		return Ban{}, ErrBadBan
	}
	id := make([]byte, 12)
	if _, err := io.ReadFull(m.random, id); err != nil {
		return Ban{}, fmt.Errorf("moderation: ban id: %w", err)
	}
	b.ID = base64.RawURLEncoding.EncodeToString(id)
	b.Created = m.now().UTC().Truncate(time.Millisecond)
	b.Until = b.Created.Add(d)
	if b.By == "" {
		b.By = ByAdmin
	}
	if err := m.store.PutBan(ctx, b); err != nil {
		return Ban{}, err
	}
	return b, nil
}

// Check returns the ban in force on a session or address, if any.
func (m *Moderator) Check(ctx context.Context, session, ipHash string) (Ban, bool, error) {
	return m.store.FindBan(ctx, session, ipHash, m.now())
}

// List returns the bans in force, newest first.
func (m *Moderator) List(ctx context.Context) ([]Ban, error) {
	return m.store.Bans(ctx, m.now())
}

// Lift ends a ban now; false when no such ban is in force.
func (m *Moderator) Lift(ctx context.Context, id string) (bool, error) {
	return m.store.LiftBan(ctx, id)
}
