package moderation

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestShieldReportsToBan: reports the reporters' shields backed ban after
// Policy.ShieldReportsToBan of them; plain reports still need
// ReportsToBan; 0 weighs shield reports like any other.
func TestShieldReportsToBan(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	for _, tc := range []struct {
		name       string
		shieldBan  int
		reports    []bool // one per distinct reporter: Shield
		wantBanned bool
	}{
		{"two shield reports, two needed", 2, []bool{true, true}, true},
		{"one shield report, two needed", 2, []bool{true}, false},
		{"two plain reports do not use the shield count", 2, []bool{false, false}, false},
		{"mixed: one shield, two plain, three for any", 2, []bool{true, false, false}, true},
		{"off: shield reports count like any", 0, []bool{true, true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewModerator(NewMemoryStore(100), Policy{ReportsToBan: 3, ShieldReportsToBan: tc.shieldBan, Window: time.Hour, BanDuration: time.Hour}, clock, nil)
			var ban *Ban
			for i, shield := range tc.reports {
				b, err := m.Report(context.Background(), Report{
					Room: "r", Reporter: string(rune('a' + i)), Reported: "x", Reason: "nudity", At: now, Shield: shield,
				}, "iphash")
				if err != nil {
					t.Fatal(err)
				}
				if b != nil {
					ban = b
				}
			}
			if (ban != nil) != tc.wantBanned {
				t.Fatalf("banned %v, want %v", ban, tc.wantBanned)
			}
			if ban != nil && tc.shieldBan > 0 && len(tc.reports) < 3 && !strings.Contains(ban.Reason, "shield") {
				t.Errorf("ban reason %q does not say the shields decided", ban.Reason)
			}
		})
	}
}
