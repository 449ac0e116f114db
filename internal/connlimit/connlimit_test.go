package connlimit

import (
	"net"
	"testing"

	"github.com/duetchat/duet/internal/addrkey"
)

func TestGuard(t *testing.T) {
	k, _ := addrkey.New(64)
	g := New(k, 2, 3)
	addr := func(s string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(s), Port: 1} }
	var keys []Key
	for _, tt := range []struct {
		from, refused string
	}{
		{"2001:db8:1:2::1", ""},
		{"2001:db8:1:2::99", ""},        // same /64: its second
		{"2001:db8:1:2::7", PerAddress}, // its third
		{"192.0.2.1", ""},               // the node's third
		{"192.0.2.2", Total},            // the node is full
	} {
		key, refused := g.Admit(addr(tt.from))
		if refused != tt.refused {
			t.Fatalf("Admit(%s) = %q, want %q", tt.from, refused, tt.refused)
		}
		if refused == "" {
			keys = append(keys, key)
		}
	}
	if g.Count() != 3 {
		t.Fatalf("Count = %d, want 3", g.Count())
	}
	g.Release(keys[0])
	if _, refused := g.Admit(addr("2001:db8:1:2::8")); refused != "" {
		t.Fatalf("after a release the /64 is still refused: %s", refused)
	}
}
