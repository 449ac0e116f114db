package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
