package turn

import (
	"net"
	"testing"
)

func TestPeerPolicy(t *testing.T) {
	tests := []struct {
		ip              string
		allowed, denied []string
		want            bool
	}{
		// The default list, each family of it.
		{ip: "127.0.0.1"}, {ip: "127.255.0.9"}, {ip: "0.0.0.0"}, {ip: "0.1.2.3"},
		{ip: "10.0.0.1"}, {ip: "172.16.5.4"}, {ip: "172.31.255.255"}, {ip: "192.168.1.1"},
		{ip: "100.64.0.1"}, {ip: "100.127.255.254"}, {ip: "169.254.169.254"}, {ip: "169.254.1.1"},
		{ip: "224.0.0.1"}, {ip: "239.255.255.250"}, {ip: "240.0.0.1"}, {ip: "255.255.255.255"},
		{ip: "::"}, {ip: "::1"}, {ip: "fc00::1"}, {ip: "fd12:3456::1"}, {ip: "fe80::1"}, {ip: "ff02::1"},
		{ip: "::ffff:127.0.0.1"}, {ip: "::ffff:10.0.0.1"}, {ip: "::ffff:169.254.169.254"}, {ip: "::ffff:0.0.0.0"},
		{ip: "2002:7f00:1::"}, {ip: "::127.0.0.1"},
		// NAT64 as a whole, whichever IPv4 address it wraps.
		{ip: "64:ff9b::7f00:1"}, {ip: "64:ff9b::a9fe:a9fe"}, {ip: "64:ff9b::808:808"},
		// Public addresses pass.
		{ip: "198.51.100.7", want: true}, {ip: "203.0.113.9", want: true}, {ip: "8.8.8.8", want: true},
		{ip: "172.32.0.1", want: true}, {ip: "100.128.0.1", want: true}, {ip: "2a00:1450::1", want: true},
		{ip: "::ffff:8.8.8.8", want: true},
		// The allowed list re-opens, in either notation.
		{ip: "127.0.0.1", allowed: []string{"127.0.0.1/32"}, want: true},
		{ip: "::ffff:127.0.0.1", allowed: []string{"127.0.0.0/8"}, want: true},
		{ip: "127.0.0.1", allowed: []string{"::ffff:127.0.0.1/128"}, want: true},
		{ip: "10.0.0.1", allowed: []string{"10.0.0.1"}, want: true},
		{ip: "10.0.0.2", allowed: []string{"10.0.0.1"}},
		{ip: "::1", allowed: []string{"::1/128"}, want: true},
		// The denied list always wins.
		{ip: "8.8.8.8", denied: []string{"8.8.0.0/16"}},
		{ip: "::ffff:8.8.8.8", denied: []string{"8.8.8.8/32"}},
		{ip: "10.0.0.1", allowed: []string{"10.0.0.0/8"}, denied: []string{"10.0.0.0/24"}},
	}
	for _, tt := range tests {
		name := tt.ip
		if tt.allowed != nil || tt.denied != nil {
			name += " allowed=" + join(tt.allowed) + " denied=" + join(tt.denied)
		}
		t.Run(name, func(t *testing.T) {
			p, err := NewPeerPolicy(tt.allowed, tt.denied)
			if err != nil {
				t.Fatal(err)
			}
			ip := net.ParseIP(tt.ip)
			if ip == nil {
				t.Fatalf("bad test address %q", tt.ip)
			}
			if got := p.Allowed(ip); got != tt.want {
				t.Fatalf("Allowed(%s) = %v, want %v", tt.ip, got, tt.want)
			}
		})
	}
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ","
		}
		out += x
	}
	return out
}

func TestPeerPolicyRejectsBadCIDRs(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "nonsense", "10.0.0/8", ""} {
		if _, err := NewPeerPolicy([]string{bad}, nil); err == nil {
			t.Errorf("allowed %q accepted", bad)
		}
		if _, err := NewPeerPolicy(nil, []string{bad}); err == nil {
			t.Errorf("denied %q accepted", bad)
		}
	}
	p, _ := NewPeerPolicy(nil, nil)
	if p.Allowed(net.IP{1, 2, 3}) {
		t.Error("a 3-byte IP was allowed")
	}
}

func BenchmarkPeerPolicyAllowed(b *testing.B) {
	p, err := NewPeerPolicy([]string{"192.168.7.0/24"}, []string{"203.0.113.0/24"})
	if err != nil {
		b.Fatal(err)
	}
	ip := net.ParseIP("198.51.100.7")
	b.ReportAllocs()
	for b.Loop() {
		if !p.Allowed(ip) {
			b.Fatal("refused")
		}
	}
}
