package signal

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/duetchat/duet/configs"
)

// TestHashIPKeysByPrefix: the ban and log hash of an IPv6 address is that
// of its limits.ipv6_prefix block, so a ban on one address of a /64
// covers the others; an IPv4 address hashes as it always did.
func TestHashIPKeysByPrefix(t *testing.T) {
	salt := []byte("0123456789abcdef0123456789abcdef")
	for _, tt := range []struct {
		name   string
		prefix int
		a, b   string
		same   bool
	}{
		{"one /64", 64, "2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe", true},
		{"address and its key", 64, "2001:db8:1:2::1", "2001:db8:1:2::/64", true},
		{"neighbouring /64", 64, "2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"default is /64", 0, "2001:db8:1:2::1", "2001:db8:1:2::9", true},
		{"one /56", 56, "2001:db8:1:200::1", "2001:db8:1:2ff::1", true},
		{"per address at /128", 128, "2001:db8:1:2::1", "2001:db8:1:2::2", false},
		{"IPv4 per address", 64, "192.0.2.1", "192.0.2.2", false},
		{"IPv4-mapped is the IPv4", 64, "::ffff:192.0.2.1", "192.0.2.1", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, err := NewHub(Options{Queue: nopQueue{}, Salt: salt, Limits: configs.Limits{IPv6Prefix: tt.prefix}})
			if err != nil {
				t.Fatal(err)
			}
			if got := h.hashIP(tt.a) == h.hashIP(tt.b); got != tt.same {
				t.Fatalf("hashIP(%s) == hashIP(%s) is %v, want %v", tt.a, tt.b, got, tt.same)
			}
			if h.HashIP(tt.a) != h.hashIP(tt.a) {
				t.Fatal("HashIP and hashIP differ")
			}
		})
	}
	// IPv4 hashes are what they were before addresses were keyed, so
	// bans filed under them stay in force across the upgrade.
	h, err := NewHub(Options{Queue: nopQueue{}, Salt: salt})
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, salt)
	mac.Write([]byte("192.0.2.1"))
	if want := hex.EncodeToString(mac.Sum(nil)[:8]); h.hashIP("192.0.2.1") != want {
		t.Fatalf("IPv4 hash changed: %s, want %s", h.hashIP("192.0.2.1"), want)
	}
	if _, err := NewHub(Options{Queue: nopQueue{}, Limits: configs.Limits{IPv6Prefix: 129}}); err == nil {
		t.Fatal("NewHub accepted limits.ipv6_prefix 129")
	}
}
