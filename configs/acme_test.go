package configs

import (
	"strings"
	"testing"
)

func TestACMEValidate(t *testing.T) {
	on := "http:\n  listen: \":443\"\n  acme:\n    enabled: true\n"
	tests := []struct {
		name string
		yaml string
		env  []string
		want string // "" = valid
	}{
		{"off by default", "", nil, ""},
		{"on with a domain", on + "    domains: [chat.example.org]\n    email: ops@example.org\n", nil, ""},
		{"domains from the environment", on, []string{"DUET_HTTP_ACME_DOMAINS=chat.example.org,www.example.org"}, ""},
		{"on with no domain", on, nil, "http.acme.domains: http.acme.enabled needs at least one domain"},
		{"with certificate files too", on + "    domains: [chat.example.org]\n  tls_cert_file: c.pem\n  tls_key_file: k.pem\n", nil,
			"http.acme.enabled: http.acme and http.tls_cert_file are both set"},
		{"wildcard", on + "    domains: [\"*.example.org\"]\n", nil, "wildcards need the DNS-01 challenge"},
		{"IP address", on + "    domains: [203.0.113.7]\n", nil, "certificates are issued to DNS names"},
		{"single label", on + "    domains: [localhost]\n", nil, "not a fully qualified DNS name"},
		{"bad character", on + "    domains: [chat_1.example.org]\n", nil, "'_' is not allowed"},
		{"plain http directory", on + "    domains: [chat.example.org]\n    directory_url: http://ca.example/dir\n", nil,
			"http.acme.directory_url: \"http://ca.example/dir\" is not an https:// URL"},
		{"bad email", on + "    domains: [chat.example.org]\n    email: ops\n", nil, "http.acme.email: \"ops\" is not an email address"},
		{"no cache dir", on + "    domains: [chat.example.org]\n    cache_dir: \"\"\n", nil, "http.acme.cache_dir: must be set"},
		{"bad http_listen", on + "    domains: [chat.example.org]\n    http_listen: \"80\"\n", nil, "http.acme.http_listen: \"80\" is not host:port"},
		{"http_listen on the https port", on + "    domains: [chat.example.org]\n    http_listen: \":443\"\n", nil, "needs its own port"},
		{"tls-alpn only", on + "    domains: [chat.example.org]\n    http_listen: \"\"\n", nil, ""},
		{"turns: from acme", on + "    domains: [chat.example.org]\nturn:\n  listen_tls: \":5349\"\n", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeFile(t, tt.yaml), tt.env)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("accepted, want %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("error %q lacks %q", err, tt.want)
			}
		})
	}
}
