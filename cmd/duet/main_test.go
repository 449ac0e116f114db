package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duetchat/duet/turn"
)

func TestCommands(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	typo := write("typo.yaml", "http:\n  listen: \":9000\"\n  listn: \":1\"\n")
	badDur := write("dur.yaml", "matcher:\n  interest_timeout: soon\n")
	good := write("good.yaml", "matcher:\n  avoid_repeat: 1m\nadmin:\n  token: s3cret\n")
	oldKeys := write("old.yaml", "turn:\n  enabled: false\nsfu:\n  mode: off\n")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	tests := []struct {
		name     string
		args     []string
		env      []string
		code     int
		stdout   []string // substrings
		stderr   []string
		noStdout []string
	}{
		{name: "no args shows usage", args: nil, code: 2, stderr: []string{"Usage:", "duet serve"}},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, stderr: []string{`unknown command "frobnicate"`}},
		{name: "version", args: []string{"version"}, code: 0, stdout: []string{"dev"}},
		{name: "config prints defaults", args: []string{"config"}, code: 0,
			stdout: []string{"listen: :8080", "interest_timeout: 10s", "avoid_repeat: 5m0s", "backend: memory"}},
		{name: "config masks secrets", args: []string{"config", "--config", good}, env: []string{"DUET_TURN_SECRET=hunter2"}, code: 0,
			stdout: []string{"token: '***'", "secret: '***'", "avoid_repeat: 1m0s"}, noStdout: []string{"s3cret", "hunter2"}},
		{name: "env override", args: []string{"config"}, env: []string{"DUET_HTTP_LISTEN=127.0.0.1:9999"}, code: 0,
			stdout: []string{"listen: 127.0.0.1:9999"}},
		{name: "unknown key names key and line", args: []string{"config", "--config", typo}, code: 2,
			stderr: []string{"line 3", `"listn"`, `"http"`}},
		{name: "bad duration names line", args: []string{"config", "--config", badDur}, code: 2,
			stderr: []string{"line 2", "soon", "duration"}},
		{name: "unknown env var", args: []string{"config"}, env: []string{"DUET_HTTP_LISTN=:1"}, code: 2,
			stderr: []string{"DUET_HTTP_LISTN"}},
		{name: "missing file", args: []string{"config", "--config", filepath.Join(dir, "nope.yaml")}, code: 2,
			stderr: []string{"nope.yaml"}},
		{name: "invalid value", args: []string{"serve"}, env: []string{"DUET_LOG_LEVEL=loud"}, code: 2,
			stderr: []string{"log.level", "loud"}},
		{name: "stray argument", args: []string{"config", "extra"}, code: 2, stderr: []string{`unexpected argument "extra"`}},
		{name: "config masks previous TURN secrets", args: []string{"config"}, env: []string{"DUET_TURN_PREVIOUS_SECRETS=old1,old2"}, code: 0,
			stdout: []string{"previous_secrets:"}, noStdout: []string{"old1", "old2"}},
		{name: "turn-credentials without a secret", args: []string{"turn-credentials"}, code: 2, stderr: []string{"no secret", "--secret"}},
		{name: "turn-credentials with a stray argument", args: []string{"turn-credentials", "x"}, code: 2, stderr: []string{`unexpected argument "x"`}},
		{name: "turn-credentials negative ttl", args: []string{"turn-credentials", "--secret", "s", "--ttl", "-1h"}, code: 2, stderr: []string{"negative"}},
		{name: "turn-credentials usage lists it", args: []string{"help"}, code: 0, stdout: []string{"turn-credentials"}},
		{name: "config maps deprecated env switches, warns on stderr", args: []string{"config"},
			env: []string{"DUET_TURN_ENABLED=false", "DUET_SFU_ENABLED=false", "DUET_SFU_MODE=off"}, code: 0,
			stdout:   []string{"turn: false", "sfu: false", "mode: fallback"},
			noStdout: []string{"\n  enabled:", "warning", `mode: "off"`, "mode: off"}, // http.acme.enabled is four deep
			stderr: []string{"duet config: warning: turn.enabled is deprecated: set roles.turn: false",
				"warning: sfu.enabled is deprecated: set roles.sfu: false", "warning: sfu.mode: off is deprecated: set roles.sfu: false"}},
		{name: "config maps deprecated file switches", args: []string{"config", "--config", oldKeys}, code: 0,
			stdout: []string{"turn: false", "sfu: false"}, noStdout: []string{"\n  enabled:"},
			stderr: []string{"turn.enabled is deprecated: set roles.turn: false", "sfu.mode: off is deprecated: set roles.sfu: false"}},
		{name: "serve refuses acme without a domain", args: []string{"serve"},
			env: []string{"DUET_HTTP_ACME_ENABLED=true", "DUET_HTTP_LISTEN=127.0.0.1:0"}, code: 2,
			stderr: []string{"http.acme.domains: http.acme.enabled needs at least one domain"}},
		{name: "validation names the role", args: []string{"config"}, env: []string{"DUET_ROLES_SFU=false", "DUET_SFU_MODE=always"}, code: 2,
			stderr: []string{"sfu.mode: always needs the SFU: set roles.sfu: true"}},
		{name: "serve logs the warnings, then a taken metrics.listen stops it", args: []string{"serve"},
			env: []string{"DUET_TURN_ENABLED=false", "DUET_ROLES_SFU=false", "DUET_METRICS_LISTEN=" + taken.Addr().String(), "DUET_HTTP_LISTEN=127.0.0.1:0"}, code: 1,
			stderr: []string{"level=WARN", "turn.enabled is deprecated: set roles.turn: false", "cannot start", "metrics.listen", taken.Addr().String(), "address already in use"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(tt.args, tt.env, &out, &errb)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out.String(), errb.String())
			}
			for _, s := range tt.stdout {
				if !strings.Contains(out.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, out.String())
				}
			}
			for _, s := range tt.noStdout {
				if strings.Contains(out.String(), s) {
					t.Errorf("stdout leaks %q", s)
				}
			}
			for _, s := range tt.stderr {
				if !strings.Contains(errb.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, errb.String())
				}
			}
		})
	}
}

// TestConfigRoundTrip: what `duet config` prints is a valid config file.
func TestConfigRoundTrip(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"config"}, []string{"DUET_MATCHER_INTEREST_TIMEOUT=3s"}, &out, &errb); code != 0 {
		t.Fatalf("config: %d %s", code, errb.String())
	}
	p := filepath.Join(t.TempDir(), "effective.yaml")
	if err := os.WriteFile(p, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if code := run([]string{"config", "--config", p}, nil, &again, &errb); code != 0 {
		t.Fatalf("reloading printed config: %d %s", code, errb.String())
	}
	if again.String() != out.String() {
		t.Fatalf("round trip changed the config:\n%s\nvs\n%s", out.String(), again.String())
	}
}

func TestTurnCredentialsCommand(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		env      []string
		secret   string
		ttl      time.Duration
		userPart string
	}{
		{"secret flag, user, ttl", []string{"turn-credentials", "--secret", "s1", "--user", "tester", "--ttl", "10m"}, nil, "s1", 10 * time.Minute, "tester"},
		{"secret from env, default ttl", []string{"turn-credentials"}, []string{"DUET_TURN_SECRET=s2"}, "s2", time.Hour, ""},
		{"flag wins over env", []string{"turn-credentials", "--secret", "s3"}, []string{"DUET_TURN_SECRET=s2", "DUET_TURN_CREDENTIAL_TTL=2h"}, "s3", 2 * time.Hour, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(tt.args, tt.env, &out, &errb); code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			fields := map[string]string{}
			for _, line := range strings.Split(out.String(), "\n") {
				if k, v, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(k, "#") {
					fields[k] = v
				}
			}
			u, err := turn.ParseUsername(fields["username"])
			if err != nil {
				t.Fatalf("username %q: %v", fields["username"], err)
			}
			if u.User != tt.userPart {
				t.Errorf("user part %q, want %q", u.User, tt.userPart)
			}
			if d := time.Until(u.Expiry) - tt.ttl; d > 2*time.Second || d < -2*time.Second {
				t.Errorf("expires in %v, want %v", time.Until(u.Expiry), tt.ttl)
			}
			if fields["password"] != turn.Password(tt.secret, fields["username"]) {
				t.Errorf("password %q is not HMAC-SHA1(secret, username)", fields["password"])
			}
		})
	}
}
