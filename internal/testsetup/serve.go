package testsetup

import (
	"crypto/tls"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// Listen listens on the TCP address addr (port 0: any free port) until the
// test ends.
func Listen(tb testing.TB, addr string) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatalf("listen on %s: %v", addr, err)
	}
	tb.Cleanup(func() { ln.Close() })
	return ln
}

// ServeHTTP serves h over plain HTTP on addr (port 0: any free port) until
// the test ends, and returns the port.
func ServeHTTP(tb testing.TB, addr string, h http.Handler) int {
	tb.Helper()
	ln := Listen(tb, addr)
	Serve(tb, ln, h)
	return ln.Addr().(*net.TCPAddr).Port
}

// Serve serves h over plain HTTP on ln until the test ends.
func Serve(tb testing.TB, ln net.Listener, h http.Handler) {
	tb.Helper()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
}

// ServeTLS completes TLS handshakes with cfg on addr (port 0: any free
// port) until the test ends, closing each connection after its handshake,
// and returns the address it listens on.
func ServeTLS(tb testing.TB, addr string, cfg *tls.Config) string {
	tb.Helper()
	ln := Listen(tb, addr)
	tl := tls.NewListener(ln, cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		testpebble.ServeHandshakes(tl)
	}()
	tb.Cleanup(func() { tl.Close(); <-done })
	return ln.Addr().String()
}

// ServeCertificate serves cert on a loopback port as [ServeTLS] does, and
// returns the address.
func ServeCertificate(tb testing.TB, cert tls.Certificate) string {
	tb.Helper()
	return ServeTLS(tb, "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
}
