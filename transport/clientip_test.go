package transport

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestClientIP(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}
	tests := []struct {
		name    string
		remote  string
		trusted []netip.Prefix
		headers map[string]string
		want    string
	}{
		{"no proxies configured: headers ignored", "203.0.113.9:5000", nil, map[string]string{"X-Forwarded-For": "198.51.100.1"}, "203.0.113.9"},
		{"untrusted peer cannot spoof", "203.0.113.9:5000", proxies, map[string]string{"X-Forwarded-For": "198.51.100.1"}, "203.0.113.9"},
		{"trusted proxy names the client", "10.1.2.3:5000", proxies, map[string]string{"X-Forwarded-For": "198.51.100.1"}, "198.51.100.1"},
		{"rightmost untrusted wins over a spoofed left", "10.1.2.3:5000", proxies, map[string]string{"X-Forwarded-For": "1.2.3.4, 198.51.100.1, 10.9.9.9"}, "198.51.100.1"},
		{"trusted proxy without header", "127.0.0.1:5000", proxies, nil, "127.0.0.1"},
		{"garbage in the chain names nobody", "10.1.2.3:5000", proxies, map[string]string{"X-Forwarded-For": "not-an-ip"}, "10.1.2.3"},
		{"Forwarded with IPv6 and port", "10.1.2.3:5000", proxies, map[string]string{"Forwarded": `for="[2001:db8::7]:4711";proto=https`}, "2001:db8::7"},
		{"Forwarded list", "10.1.2.3:5000", proxies, map[string]string{"Forwarded": "for=192.0.2.60, for=10.0.0.5"}, "192.0.2.60"},
		{"mapped IPv4 peer", "[::ffff:10.1.2.3]:5000", proxies, map[string]string{"X-Forwarded-For": "198.51.100.2"}, "198.51.100.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest("GET", "/ws", nil)
			r.RemoteAddr = tt.remote
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			if got := ClientIP(r, tt.trusted); got != tt.want {
				t.Fatalf("ClientIP = %q, want %q", got, tt.want)
			}
		})
	}
}
