package configs

import (
	"strings"
	"testing"
)

// TestShieldConfig: moderation.shield takes the three modes (off by
// default) and refuses anything else by name; shield_reports_to_ban stays
// within 0..reports_to_ban.
func TestShieldConfig(t *testing.T) {
	d, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if d.Moderation.Shield != "off" || d.Moderation.ShieldReportsToBan != 0 {
		t.Fatalf("defaults: shield %q, shield_reports_to_ban %d", d.Moderation.Shield, d.Moderation.ShieldReportsToBan)
	}
	for _, tc := range []struct {
		name, yaml string
		env        []string
		want       string // "" loads; else the error names this
	}{
		{"off", "moderation:\n  shield: \"off\"\n", nil, ""},
		{"blur until safe", "moderation:\n  shield: blur-until-safe\n", nil, ""},
		{"blur on detect by env", "", []string{"DUET_MODERATION_SHIELD=blur-on-detect"}, ""},
		{"fewer shield reports", "moderation:\n  reports_to_ban: 3\n  shield_reports_to_ban: 1\n", nil, ""},
		{"unknown mode", "moderation:\n  shield: blur\n", nil, `moderation.shield: "blur" is not one of`},
		{"empty mode", "moderation:\n  shield: \"\"\n", nil, "moderation.shield"},
		{"off unquoted", "moderation:\n  shield: off\n", nil, ""},
		{"negative", "moderation:\n  shield_reports_to_ban: -1\n", nil, "moderation.shield_reports_to_ban"},
		{"more than any report", "moderation:\n  reports_to_ban: 2\n  shield_reports_to_ban: 3\n", nil, "moderation.shield_reports_to_ban"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(writeFile(t, tc.yaml), tc.env)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v (config %+v), want an error naming %s", err, c, tc.want)
			}
		})
	}
}
