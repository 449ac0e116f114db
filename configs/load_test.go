package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "duet.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsAreValid(t *testing.T) {
	c, err := Load("", nil)
	if err != nil {
		t.Fatalf("defaults: %v", err)
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"http.listen", c.HTTP.Listen == ":8080"},
		{"store.backend", c.Store.Backend == "memory"},
		{"interest_timeout", c.Matcher.InterestTimeout == 10*time.Second},
		{"avoid_repeat", c.Matcher.AvoidRepeat == 5*time.Minute},
		{"resume_grace", c.Signal.ResumeGrace == 15*time.Second},
		{"max_message_bytes", c.Signal.MaxMessageBytes == 65536},
		{"ping_interval", c.Signal.PingInterval == 20*time.Second},
		{"turn.listen_udp", c.TURN.ListenUDP == ":3478"},
		{"all roles on", c.Roles.Matcher && c.Roles.Signal && c.Roles.TURN && c.Roles.SFU},
		{"http.reuse_port off", !c.HTTP.ReusePort},
		{"lists are empty, not nil", c.HTTP.AllowedOrigins != nil && len(c.HTTP.AllowedOrigins) == 0},
	}
	for _, ch := range checks {
		if !ch.ok {
			t.Errorf("default %s wrong: %+v", ch.name, c)
		}
	}
}

func TestFileOverridesOnlyItsKeys(t *testing.T) {
	p := writeFile(t, "matcher:\n  interest_timeout: 3s\nhttp:\n  allowed_origins: [\"https://a.example\"]\n")
	c, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Matcher.InterestTimeout != 3*time.Second {
		t.Errorf("interest_timeout = %s", c.Matcher.InterestTimeout)
	}
	if c.Matcher.AvoidRepeat != 5*time.Minute || c.HTTP.Listen != ":8080" {
		t.Errorf("untouched keys lost their defaults: %+v %+v", c.Matcher, c.HTTP)
	}
	if len(c.HTTP.AllowedOrigins) != 1 {
		t.Errorf("allowed_origins = %v", c.HTTP.AllowedOrigins)
	}
	if c2, err := Load(writeFile(t, ""), nil); err != nil || c2.HTTP.Listen != ":8080" {
		t.Errorf("empty file: %v", err)
	}
}

func TestFileErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // all must appear in the error
	}{
		{"unknown top-level key", "htp:\n  listen: \":1\"\n", []string{"line 1", `"htp"`}},
		{"unknown nested key", "http:\n  listen: \":1\"\n  listn: \":2\"\n", []string{"line 3", `"listn"`, `section "http"`}},
		{"unknown deep key", "store:\n  redis:\n    adrs: [x]\n", []string{"line 3", `"adrs"`, `"store.redis"`}},
		{"int expected", "signal:\n  chat_max_chars: many\n", []string{"line 2", `"many"`, "whole number"}},
		{"bad duration", "matcher:\n  interest_timeout: 10 seconds\n", []string{"line 2", "duration"}},
		{"bare number is not a duration", "matcher:\n  interest_timeout: 10\n", []string{"line 2", "duration"}},
		{"bool expected", "roles:\n  turn: maybe\n", []string{"line 2", "boolean"}},
		{"two documents", "log:\n  level: info\n---\nlog:\n  level: debug\n", []string{"more than one YAML document"}},
		{"syntax error", "http: [\n", []string{"duet.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeFile(t, tt.yaml), nil)
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
}

func TestEnvOverrides(t *testing.T) {
	c, err := Load("", []string{
		"PATH=/usr/bin", // not ours: ignored
		"DUET_HTTP_LISTEN=127.0.0.1:9000",
		"DUET_SIGNAL_CHAT_MAX_CHARS=42",
		"DUET_MATCHER_AVOID_REPEAT=0s",
		"DUET_ROLES_TURN=false",
		"DUET_HTTP_ALLOWED_ORIGINS=https://a.example, https://b.example",
		"DUET_STORE_REDIS_PASSWORD=pw",
		"DUET_PUBLIC_IP=203.0.113.9",
		"DUET_LIMITS_CHAT_RATE=2.5",
		"DUET_ROLES_SFU=off",
		"DUET_SIGNAL_FACE_CHECK=on",
	})
	if err != nil {
		t.Fatal(err)
	}
	got := []struct {
		name string
		ok   bool
	}{
		{"string", c.HTTP.Listen == "127.0.0.1:9000"},
		{"int", c.Signal.ChatMaxChars == 42},
		{"duration", c.Matcher.AvoidRepeat == 0},
		{"bool", !c.Roles.TURN},
		{"bool as off", !c.Roles.SFU},
		{"bool as on", c.Signal.FaceCheck},
		{"list", strings.Join(c.HTTP.AllowedOrigins, "|") == "https://a.example|https://b.example"},
		{"nested", c.Store.Redis.Password == "pw"},
		{"top-level scalar", c.PublicIP == "203.0.113.9"},
		{"float", c.Limits.ChatRate == 2.5},
	}
	for _, g := range got {
		if !g.ok {
			t.Errorf("%s override not applied", g.name)
		}
	}
}

func TestEnvErrors(t *testing.T) {
	tests := []struct{ env, want string }{
		{"DUET_HTTP_LISTN=:1", "DUET_HTTP_LISTN: unknown setting"},
		{"DUET_SIGNAL_CHAT_MAX_CHARS=lots", "whole number"},
		{"DUET_MATCHER_INTEREST_TIMEOUT=10", "duration"},
		{"DUET_ROLES_SFU=perhaps", "boolean"},
		{"DUET_HTTP=x", "DUET_HTTP: unknown setting"},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			_, err := Load("", []string{tt.env})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestValidation(t *testing.T) {
	tests := []struct {
		env  string
		want string
	}{
		{"DUET_STORE_BACKEND=postgres", "store.backend"},
		{"DUET_LOG_LEVEL=loud", "log.level"},
		{"DUET_LOG_FORMAT=xml", "log.format"},
		{"DUET_TURN_MODE=sometimes", "turn.mode"},
		{"DUET_SFU_MODE=maybe", "sfu.mode"},
		{"DUET_SFU_UDP_PORT=70000", "sfu.udp_port"},
		{"DUET_TURN_RELAY_PORT_MIN=60000", "turn.relay_port_min"}, // with max lowered to 50000 below
		{"DUET_MATCHER_INTEREST_TIMEOUT=0s", "matcher.interest_timeout"},
		{"DUET_MATCHER_AVOID_REPEAT=-1s", "matcher.avoid_repeat"},
		{"DUET_SIGNAL_MAX_MESSAGE_BYTES=10", "signal.max_message_bytes"},
		{"DUET_SIGNAL_RESUME_GRACE=0s", "signal.resume_grace"},
		{"DUET_SIGNAL_CHAT_LINKS=block", "signal.chat_links"},
		{"DUET_SIGNAL_FACE_CHECK_INTERVAL=100ms", "signal.face_check_interval"},
		{"DUET_SIGNAL_FACE_CHECK_MISSING=kick", "signal.face_check_missing"},
		{"DUET_SIGNAL_FACE_CHECK_GRACE=-1s", "signal.face_check_grace"},
		{"DUET_SIGNAL_CHAT_LINKS_AFTER=-1s", "signal.chat_links_after"},
		{"DUET_SIGNAL_CHAT_LINKS_AFTER_MESSAGES=-1", "signal.chat_links_after_messages"},
		{"DUET_SITE_MIN_AGE=-1", "site.min_age"},
		{"DUET_SITE_MIN_AGE=150", "site.min_age"},
		{"DUET_HTTP_TLS_CERT_FILE=/x.pem", "tls_key_file"},
		{"DUET_TURN_ALLOWED_PEER_CIDRS=10.0.0.0/33", "turn.allowed_peer_cidrs"},
		{"DUET_PUBLIC_IP=not-an-ip", "public_ip"},
		{"DUET_TURN_LISTEN_TLS=:5349", "turn.listen_tls"},
		{"DUET_TURN_TLS_CERT_FILE=/x.pem", "turn.tls_cert_file"},
		{"DUET_TURN_MAX_ALLOCATIONS=-1", "turn.max_allocations"},
		{"DUET_TURN_TCP_AUTH_TIMEOUT=0s", "turn.tcp_auth_timeout"},
		{"DUET_TURN_TCP_CONNECTIONS_PER_IP=-1", "turn.tcp_connections_per_ip"},
		{"DUET_TURN_MAX_TCP_CONNECTIONS=-1", "turn.max_tcp_connections"},
		{"DUET_TURN_ENABLED=false DUET_TURN_MODE=always", "turn.mode"},
		{"DUET_LIMITS_CHAT_RATE=0", "limits.chat_rate"},
		{"DUET_LIMITS_IPV6_PREFIX=0", "limits.ipv6_prefix"},
		{"DUET_LIMITS_IPV6_PREFIX=129", "limits.ipv6_prefix"},
		{"DUET_HTTP_LISTEN=8080", "http.listen"},
		{"DUET_HTTP_REUSE_PORT=true", "http.reuse_port"}, // on the memory store
		{"DUET_HTTP_REUSE_PORT=yes-please", "DUET_HTTP_REUSE_PORT"},
		{"DUET_HTTP_IDLE_TIMEOUT=0s", "http.idle_timeout"},
		{"DUET_HTTP_MAX_CONNECTIONS=-1", "http.max_connections"},
		{"DUET_HTTP_MAX_CONNECTIONS_PER_IP=5", "http.max_connections_per_ip"}, // below limits.connections_per_ip 20
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			env := strings.Fields(tt.env)
			if strings.HasPrefix(tt.env, "DUET_TURN_RELAY_PORT_MIN") {
				env = append(env, "DUET_TURN_RELAY_PORT_MAX=50000")
			}
			_, err := Load("", env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to name %q", err, tt.want)
			}
		})
	}
	// All problems are reported together.
	_, err := Load("", []string{"DUET_LOG_LEVEL=loud", "DUET_LOG_FORMAT=xml"})
	if err == nil || !strings.Contains(err.Error(), "log.level") || !strings.Contains(err.Error(), "log.format") {
		t.Fatalf("want both problems, got %v", err)
	}
}

func TestMaskedAndYAML(t *testing.T) {
	c, err := Load("", []string{"DUET_TURN_SECRET=s1", "DUET_ADMIN_TOKEN=t1", "DUET_STORE_REDIS_PASSWORD=p1"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Masked().YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"s1", "t1", "p1"} {
		if strings.Contains(string(out), ": "+secret) {
			t.Errorf("secret %q printed", secret)
		}
	}
	if c.TURN.Secret != "s1" {
		t.Error("Masked changed the original")
	}
	if !strings.Contains(string(out), "interest_timeout: 10s") {
		t.Errorf("durations not written as text:\n%s", out)
	}
	// Unmasked output loads back to the same config.
	raw, _ := c.YAML()
	back, err := Load(writeFile(t, string(raw)), nil)
	if err != nil {
		t.Fatalf("reloading: %v", err)
	}
	raw2, _ := back.YAML()
	if string(raw) != string(raw2) {
		t.Fatal("YAML round trip changed the config")
	}
}
