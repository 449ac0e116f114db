package configs

import (
	"regexp"
	"strings"
	"testing"
)

// The retired switches (turn.enabled, sfu.enabled, sfu.mode: off) still
// load, from a file or the environment, folded into roles.turn and
// roles.sfu with a warning naming the new key.
func TestDeprecatedSwitches(t *testing.T) {
	tests := []struct {
		name      string
		yaml      string   // file body; "" = no file
		env       []string //
		turn, sfu bool     // the effective roles
		warns     []string // each must appear in a warning, in order
		noWarn    string   // must appear in no warning
	}{
		{name: "none", turn: true, sfu: true},
		{name: "new keys only", yaml: "roles:\n  turn: false\n  sfu: false\n", turn: false, sfu: false},
		{name: "new keys from env", env: []string{"DUET_ROLES_TURN=false", "DUET_ROLES_SFU=false"}, turn: false, sfu: false},

		{name: "turn.enabled false in file", yaml: "turn:\n  enabled: false\n", turn: false, sfu: true,
			warns: []string{"turn.enabled is deprecated: set roles.turn: false"}, noWarn: "DUET_"},
		{name: "turn.enabled false from env", env: []string{"DUET_TURN_ENABLED=false"}, turn: false, sfu: true,
			warns: []string{"turn.enabled is deprecated: set roles.turn: false (from DUET_TURN_ENABLED=false: use DUET_ROLES_TURN=false)"}},
		{name: "sfu.enabled false in file", yaml: "sfu:\n  enabled: false\n", turn: true, sfu: false,
			warns: []string{"sfu.enabled is deprecated: set roles.sfu: false"}, noWarn: "DUET_"},
		{name: "sfu.enabled false from env", env: []string{"DUET_SFU_ENABLED=false"}, turn: true, sfu: false,
			warns: []string{"sfu.enabled is deprecated: set roles.sfu: false (from DUET_SFU_ENABLED=false: use DUET_ROLES_SFU=false)"}},
		{name: "sfu.mode off in file", yaml: "sfu:\n  mode: off\n", turn: true, sfu: false,
			warns: []string{"sfu.mode: off is deprecated: set roles.sfu: false"}, noWarn: "DUET_"},
		{name: "sfu.mode off from env", env: []string{"DUET_SFU_MODE=off"}, turn: true, sfu: false,
			warns: []string{"sfu.mode: off is deprecated: set roles.sfu: false (from DUET_SFU_MODE=off: use DUET_ROLES_SFU=false)"}},
		{name: "the bench scripts' trio", env: []string{"DUET_TURN_ENABLED=false", "DUET_SFU_ENABLED=false", "DUET_SFU_MODE=off"}, turn: false, sfu: false,
			warns: []string{"turn.enabled is deprecated: set roles.turn: false", "sfu.enabled is deprecated: set roles.sfu: false", "sfu.mode: off is deprecated: set roles.sfu: false"}},
		{name: "file old key, env new key", yaml: "sfu:\n  enabled: false\n", env: []string{"DUET_ROLES_TURN=false"}, turn: false, sfu: false,
			warns: []string{"sfu.enabled is deprecated: set roles.sfu: false"}, noWarn: "DUET_"},

		{name: "old key true, role false in file: the role wins", yaml: "roles:\n  turn: false\nturn:\n  enabled: true\n", turn: false, sfu: true,
			warns: []string{"turn.enabled is deprecated and ignored: roles.turn is false"}},
		{name: "old key true, role false from env: the role wins", env: []string{"DUET_ROLES_SFU=false", "DUET_SFU_ENABLED=true"}, turn: true, sfu: false,
			warns: []string{"sfu.enabled is deprecated and ignored: roles.sfu is false, which wins; remove sfu.enabled (from DUET_SFU_ENABLED=true: use DUET_ROLES_SFU)"}},
		{name: "old key true, role true", yaml: "turn:\n  enabled: true\nsfu:\n  enabled: true\n", turn: true, sfu: true,
			warns: []string{"turn.enabled is deprecated: roles.turn alone switches it", "sfu.enabled is deprecated: roles.sfu alone switches it"}},
		{name: "sfu.enabled true with sfu.mode always from env", env: []string{"DUET_SFU_ENABLED=true", "DUET_SFU_MODE=always"}, turn: true, sfu: true,
			warns: []string{"sfu.enabled is deprecated: roles.sfu alone switches it"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.yaml != "" {
				path = writeFile(t, tt.yaml)
			}
			c, err := Load(path, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if c.Roles.TURN != tt.turn || c.Roles.SFU != tt.sfu {
				t.Errorf("roles.turn %v, roles.sfu %v; want %v, %v", c.Roles.TURN, c.Roles.SFU, tt.turn, tt.sfu)
			}
			if len(c.Warnings) != len(tt.warns) {
				t.Fatalf("warnings %q, want %d", c.Warnings, len(tt.warns))
			}
			for i, w := range tt.warns {
				if !strings.Contains(c.Warnings[i], w) {
					t.Errorf("warning %q lacks %q", c.Warnings[i], w)
				}
				if tt.noWarn != "" && strings.Contains(c.Warnings[i], tt.noWarn) {
					t.Errorf("warning %q names %q", c.Warnings[i], tt.noWarn)
				}
			}
			// The old keys are gone from the effective config: it prints
			// with the new ones and loads back the same, without warnings.
			if c.TURN.Enabled != nil || c.SFU.Enabled != nil || c.SFU.Mode == "off" {
				t.Errorf("old keys left set: turn.enabled %v, sfu.enabled %v, sfu.mode %q", c.TURN.Enabled, c.SFU.Enabled, c.SFU.Mode)
			}
			out, err := c.YAML()
			if err != nil {
				t.Fatal(err)
			}
			if regexp.MustCompile(`(?m)^  enabled:`).Match(out) || strings.Contains(string(out), "mode: \"off\"") || strings.Contains(string(out), "Warnings") {
				t.Errorf("printed config carries an old key or the warnings:\n%s", out)
			}
			back, err := Load(writeFile(t, string(out)), nil)
			if err != nil {
				t.Fatalf("reloading the printed config: %v", err)
			}
			if back.Roles != c.Roles || len(back.Warnings) != 0 {
				t.Errorf("reloaded roles %+v warnings %q; want %+v and none", back.Roles, back.Warnings, c.Roles)
			}
		})
	}
}

// Validation speaks of the roles, and a problem caused by an old key
// comes with the warning that says where it went.
func TestRoleValidation(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		env  []string
		want []string
	}{
		{name: "sfu always without the SFU", env: []string{"DUET_ROLES_SFU=false", "DUET_SFU_MODE=always"},
			want: []string{"sfu.mode: always needs the SFU: set roles.sfu: true"}},
		{name: "sfu always with sfu.enabled false", env: []string{"DUET_SFU_ENABLED=false", "DUET_SFU_MODE=always"},
			want: []string{"set roles.sfu: true", "warning: sfu.enabled is deprecated: set roles.sfu: false"}},
		{name: "sfu always with sfu.enabled false in a file", yaml: "sfu:\n  enabled: false\n  mode: always\n",
			want: []string{"set roles.sfu: true", "warning: sfu.enabled is deprecated"}},
		{name: "turn always without the relay", env: []string{"DUET_ROLES_TURN=false", "DUET_TURN_MODE=always"},
			want: []string{"turn.mode: always needs the integrated relay: set roles.turn: true"}},
		{name: "turn always with turn.enabled false", yaml: "turn:\n  enabled: false\n  mode: always\n",
			want: []string{"set roles.turn: true", "warning: turn.enabled is deprecated: set roles.turn: false"}},
		{name: "relay with no listener", env: []string{"DUET_TURN_LISTEN_UDP=", "DUET_TURN_LISTEN_TCP="},
			want: []string{"turn.listen_udp: roles.turn is true", "roles.turn: false"}},
		{name: "sfu.mode neither", env: []string{"DUET_SFU_MODE=sometimes"},
			want: []string{"sfu.mode", `["fallback" "always"]`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.yaml != "" {
				path = writeFile(t, tt.yaml)
			}
			_, err := Load(path, tt.env)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	// No listener is fine when the relay is off.
	if _, err := Load("", []string{"DUET_TURN_LISTEN_UDP=", "DUET_TURN_LISTEN_TCP=", "DUET_ROLES_TURN=false"}); err != nil {
		t.Errorf("relay off with no listener: %v", err)
	}
	// A config built by hand still holding an old switch is refused by
	// name (Load would have folded it).
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	off, on := false, true
	c.TURN.Enabled, c.SFU.Enabled, c.SFU.Mode = &off, &on, "off"
	err = c.Validate()
	for _, w := range []string{"turn.enabled: deprecated, set roles.turn instead", "sfu.enabled: deprecated, set roles.sfu instead", "sfu.mode: off is deprecated: set roles.sfu: false"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate: %v, want %q", err, w)
		}
	}
}
