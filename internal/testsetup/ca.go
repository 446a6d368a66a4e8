package testsetup

import (
	"context"
	"net"
	"testing"

	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// CA starts an in-process Pebble with opts for the test and closes it when
// the test ends; a failure to close is reported as an error of the test.
func CA(tb testing.TB, opts testpebble.Options) *testpebble.CA {
	tb.Helper()
	ca, err := testpebble.New(opts)
	if err != nil {
		tb.Fatalf("testpebble.New: %v", err)
	}
	tb.Cleanup(func() {
		if err := ca.Close(); err != nil {
			tb.Errorf("closing the test CA: %v", err)
		}
	})
	return ca
}

// DNS starts a mock DNS server of testpebble on its own, serving zones,
// and closes it when the test ends.
func DNS(tb testing.TB, zones ...string) *testpebble.DNSServer {
	tb.Helper()
	d, err := testpebble.NewDNSServer()
	if err != nil {
		tb.Fatalf("testpebble.NewDNSServer: %v", err)
	}
	tb.Cleanup(func() { d.Close() })
	for _, z := range zones {
		d.AddZone(z)
	}
	return d
}

// Resolver returns a resolver that asks d, over TCP, whatever the name: the
// view of DNS that the test CA's validation authority has.
func Resolver(d *testpebble.DNSServer) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dialer net.Dialer
		return dialer.DialContext(ctx, "tcp", d.Addr())
	}}
}
