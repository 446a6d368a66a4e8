package testpebble

import (
	"crypto/tls"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// ServeHTTP01 serves h on the loopback port the CA's validation authority
// connects to for http-01 ([CA.HTTPPort]) until the test ends.
func (c *CA) ServeHTTP01(tb testing.TB, h http.Handler) {
	tb.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(c.HTTPPort())))
	if err != nil {
		tb.Fatalf("testpebble: listening for http-01: %v", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
}

// ServeTLSALPN01 completes TLS handshakes offering acme-tls/1 with
// getCertificate on the loopback port the CA's validation authority
// connects to for tls-alpn-01 ([CA.TLSPort]) until the test ends.
func (c *CA) ServeTLSALPN01(tb testing.TB, getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)) {
	tb.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(c.TLSPort())))
	if err != nil {
		tb.Fatalf("testpebble: listening for tls-alpn-01: %v", err)
	}
	tl := tls.NewListener(ln, &tls.Config{GetCertificate: getCertificate, NextProtos: []string{"acme-tls/1"}})
	go ServeHandshakes(tl)
	tb.Cleanup(func() { tl.Close() })
}
