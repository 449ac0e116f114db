package configs

import (
	"fmt"
	"strings"
)

// foldDeprecated maps the retired switches onto the roles, which are now
// the only ones: turn.enabled onto roles.turn, sfu.enabled and sfu.mode:
// off onto roles.sfu. An old key set to false turns its role off; set to
// true it changes nothing (a role that is false stays false). Each use
// is returned as a warning naming the key to set instead; the old keys
// are cleared, so the config prints with the new ones only. env is what
// Load read, to tell a variable from a file key in the warnings.
func (c *Config) foldDeprecated(env []string) []string {
	set := map[string]string{}
	for _, kv := range env {
		if name, value, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(name, "DUET_") {
			set[name] = value
		}
	}
	var warns []string
	warn := func(msg, envName, envNew string) {
		if _, ok := set[envName]; ok {
			msg += fmt.Sprintf(" (from %s=%s: use %s)", envName, set[envName], envNew)
		}
		warns = append(warns, msg)
	}
	// switchOff folds one old boolean into its role.
	switchOff := func(old **bool, role *bool, oldKey, roleKey, envName, envRole string) {
		if *old == nil {
			return
		}
		switch {
		case !**old:
			*role = false
			warn(fmt.Sprintf("%s is deprecated: set %s: false", oldKey, roleKey), envName, envRole+"=false")
		case !*role:
			warn(fmt.Sprintf("%s is deprecated and ignored: %s is false, which wins; remove %s", oldKey, roleKey, oldKey), envName, envRole)
		default:
			warn(fmt.Sprintf("%s is deprecated: %s alone switches it; remove %s", oldKey, roleKey, oldKey), envName, envRole)
		}
		*old = nil
	}
	switchOff(&c.TURN.Enabled, &c.Roles.TURN, "turn.enabled", "roles.turn", "DUET_TURN_ENABLED", "DUET_ROLES_TURN")
	switchOff(&c.SFU.Enabled, &c.Roles.SFU, "sfu.enabled", "roles.sfu", "DUET_SFU_ENABLED", "DUET_ROLES_SFU")
	if c.SFU.Mode == "off" {
		c.Roles.SFU = false
		c.SFU.Mode = "fallback" // the default: inert with the SFU off
		warn("sfu.mode: off is deprecated: set roles.sfu: false", "DUET_SFU_MODE", "DUET_ROLES_SFU=false")
	}
	return warns
}
