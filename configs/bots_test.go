package configs

import (
	"strings"
	"testing"
)

// TestBotsPOW: the proof-of-work keys load from YAML (on/off spelled as
// operators write them) and env, the key is masked, and nonsense is
// refused by name.
func TestBotsPOW(t *testing.T) {
	c, err := Load(writeFile(t, "bots:\n  pow: on\n  pow_key: k-yaml\n"), []string{"DUET_BOTS_POW_COST=1000"})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Bots.POW || c.Bots.POWKey != "k-yaml" || c.Bots.POWCost != 1000 {
		t.Fatalf("bots = %+v", c.Bots)
	}
	out, err := c.Masked().YAML()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "k-yaml") {
		t.Error("bots.pow_key printed")
	}
	if d, _ := Default(); d.Bots.POW {
		t.Error("proof-of-work is on by default")
	}
	for _, tc := range []struct{ yaml, key string }{
		{"bots:\n  pow: on\n  pow_cost: 0\n", "bots.pow_cost"},
		{"bots:\n  pow: on\n  pow_cost: 100\n  pow_max_cost: 10\n", "bots.pow_cost"},
		{"bots:\n  pow: on\n  pow_expiry: 0s\n", "bots.pow_expiry"},
		{"bots:\n  pow: on\n  pow_pass_joins: 0\n", "bots.pow_pass_joins"},
	} {
		if _, err := Load(writeFile(t, tc.yaml), nil); err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%q: got %v, want an error naming %s", tc.yaml, err, tc.key)
		}
	}
}
