package signal

import (
	"context"
	"net/http"
	"net/netip"
	"testing"

	"github.com/duetchat/duet/matcher"
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
			if got := clientIP(r, tt.trusted); got != tt.want {
				t.Fatalf("clientIP = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestSharedSaltHashesAlike: hubs given one salt hash an address alike;
// without one each hub has its own.
func TestSharedSaltHashesAlike(t *testing.T) {
	salt := []byte("0123456789abcdef0123456789abcdef")
	hub := func(s []byte) *Hub {
		h, err := NewHub(Options{Queue: nopQueue{}, Salt: s})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	if a, b := hub(salt).hashIP("192.0.2.1"), hub(salt).hashIP("192.0.2.1"); a != b {
		t.Fatalf("one salt, two hashes: %s %s", a, b)
	}
	if a, b := hub(nil).hashIP("192.0.2.1"), hub(nil).hashIP("192.0.2.1"); a == b {
		t.Fatal("two random salts hashed alike")
	}
}

type nopQueue struct{}

func (nopQueue) Join(context.Context, matcher.Ticket) error  { return nil }
func (nopQueue) Leave(context.Context, string) (bool, error) { return false, nil }
