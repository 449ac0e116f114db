package addrkey

import "testing"

func TestKey(t *testing.T) {
	for _, tc := range []struct {
		bits     int
		in, want string
	}{
		{0, "192.0.2.7", "192.0.2.7"},
		{64, "::ffff:192.0.2.7", "192.0.2.7"},
		{64, "2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"},
		{64, "2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"},
		{64, "2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{56, "2001:db8:1:3ff::1", "2001:db8:1:300::/56"},
		{128, "2001:db8::1", "2001:db8::1/128"},
		{64, "fe80::1%eth0", "fe80::/64"},
		{64, "not an address", "not an address"},
	} {
		k, err := New(tc.bits)
		if err != nil {
			t.Fatal(err)
		}
		if got := k.Key(tc.in); got != tc.want {
			t.Errorf("bits %d: Key(%q) = %q, want %q", tc.bits, tc.in, got, tc.want)
		}
	}
	for _, bad := range []int{-1, 129} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%d) accepted", bad)
		}
	}
}
