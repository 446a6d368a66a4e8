package acme_test

import (
	"net/netip"
	"testing"

	"github.com/tlsmint/tlsmint/acme"
)

func TestReverseName(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.10":  "10.2.0.192.in-addr.arpa",
		"2001:db8::1": "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
	} {
		if got := acme.ReverseName(netip.MustParseAddr(in)); got != want {
			t.Errorf("ReverseName(%s) = %s, want %s", in, got, want)
		}
	}
}
