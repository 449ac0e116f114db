package deploy

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/duetchat/duet/configs"
)

// TestSystemdUnit: the unit keeps its hardening, and systemd itself
// accepts it (systemd-analyze, where this machine has it) with an
// exposure score no worse than 2.0 of 10.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("duet.service")
	if err != nil {
		t.Fatal(err)
	}
	set := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			set[k] = append(set[k], v)
		}
	}
	for k, v := range map[string]string{
		"ExecStart":               "/usr/local/bin/duet serve",
		"EnvironmentFile":         "-/etc/duet/duet.env",
		"DynamicUser":             "yes",
		"StateDirectory":          "duet",
		"AmbientCapabilities":     "CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet":   "CAP_NET_BIND_SERVICE",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"Restart":                 "on-failure",
		"LimitNOFILE":             "1048576",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
	} {
		if !slices.Contains(set[k], v) {
			t.Errorf("duet.service: %s=%v, want %s", k, set[k], v)
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed: the unit was checked as text only")
	}
	// verify wants ExecStart to exist: point it at any executable.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "duet.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(unit, []byte("/usr/local/bin/duet"), []byte(self)), 0o644); err != nil {
		t.Fatal(err)
	}
	// verify exits 0 on an unknown key or a bad value, but says so.
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(analyze, "security", "--offline=true", "--threshold=20", path).CombinedOutput()
	if err != nil {
		score := regexp.MustCompile(`Overall exposure level.*`).Find(out)
		t.Errorf("systemd-analyze security: %v: %s (want at most 2.0)", err, score)
	}
}

// TestEnvFile: every DUET_ line of duet.env, commented out or not, is a
// key duet knows and a value it accepts.
func TestEnvFile(t *testing.T) {
	data, err := os.ReadFile("duet.env")
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for line := range strings.Lines(string(data)) {
		line = strings.TrimPrefix(strings.TrimSpace(line), "#")
		if strings.HasPrefix(line, "DUET_") {
			env = append(env, line)
		}
	}
	if len(env) < 5 {
		t.Fatalf("duet.env has %d DUET_ lines", len(env))
	}
	if _, err := configs.Load("", env); err != nil {
		t.Errorf("duet.env: %v", err)
	}
}
