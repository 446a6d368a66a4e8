package clientnet

import "testing"

func TestOf(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"203.0.113.7", "203.0.113.0/24"},
		{"::ffff:203.0.113.7", "203.0.113.0/24"},
		{"2001:db8:1:2::5", "2001:db8:1::/48"},
		{"fe80::1%eth0", "fe80::/48"},
		{"", Other},
		{"203.0.113.7:443", Other},
		{"example.com", Other},
	} {
		if got := Of(tc.addr); got != tc.want {
			t.Errorf("Of(%q) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}
