package autotls_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strconv"
	"testing"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/storage"
)

// env is a test CA plus the challenge servers its validation authority
// reaches (http-01 on HTTPPort, tls-alpn-01 on TLSPort), which answer for
// the Manager currently "behind the load balancer".
type env struct {
	ca *testpebble.CA
	ch *testsetup.Challenges
	// failHost, when set, makes the http-01 server answer 404 for it.
	failHost failHost
}

// failHost is the http-01 host that fails: Store sets it ("" none).
type failHost struct{ ch *testsetup.Challenges }

// Store makes the http-01 server answer 404 for host.
func (f failHost) Store(host string) { f.ch.FailHTTP01(host) }

func newEnv(t testing.TB, opts testpebble.Options) *env {
	t.Helper()
	ca := testsetup.CA(t, opts)
	ch := testsetup.NewChallenges(t, ca)
	return &env{ca: ca, ch: ch, failHost: failHost{ch}}
}

// manager returns a Manager pointed at the test CA, made the one the
// challenge servers answer for.
func (e *env) manager(t testing.TB, store storage.Storage, mod func(*autotls.Manager)) *autotls.Manager {
	t.Helper()
	m := testsetup.Manager(t, e.ca, store, mod, "example.com", "*.example.com", "www.example.org")
	// The tests were written for a first ARI poll right after issuance;
	// TestFirstARIPollSpread checks the default.
	autotls.SetARIFirstPollForTest(m, 0)
	e.ch.Use(m)
	return m
}

// serve starts an HTTPS-less TLS server for m on loopback and returns its
// address: each connection completes a handshake and is closed.
func serve(t testing.TB, m *autotls.Manager) string {
	t.Helper()
	return testsetup.ServeTLS(t, "127.0.0.1:0", m.TLSConfig())
}

// handshake dials addr with SNI name and returns the server's leaf.
func (e *env) handshake(ctx context.Context, addr, name string) (*x509.Certificate, error) {
	d := tls.Dialer{Config: &tls.Config{ServerName: name, RootCAs: e.ca.RootPool(), NextProtos: []string{"h2", "http/1.1"}}}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

// ctxT is testsetup.Context, under the name the tests use.
func ctxT(t testing.TB) context.Context { return testsetup.Context(t) }

// hello builds a ClientHelloInfo for calling GetCertificate directly.
func hello(name string) *tls.ClientHelloInfo {
	return &tls.ClientHelloInfo{ServerName: name, SupportedProtos: []string{"h2", "http/1.1"}}
}

func totalRequests(ca *testpebble.CA) int {
	n := 0
	for _, v := range ca.RequestCounts() {
		n += v
	}
	return n
}

func itoa(i int) string { return strconv.Itoa(i) }

func dnsPort(t testing.TB, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// bindChallengePorts listens on two free loopback ports and makes them
// the CA's http-01 and tls-alpn-01 ports: the listeners exist before the
// CA does and stay open, so no port is picked, freed and bound again — in
// between, a parallel test's socket could take it.
func bindChallengePorts(t testing.TB, opts *testpebble.Options) (httpLn, tlsLn net.Listener) {
	t.Helper()
	httpLn, tlsLn = testsetup.Listen(t, "127.0.0.1:0"), testsetup.Listen(t, "127.0.0.1:0")
	opts.HTTPPort, opts.TLSPort = httpLn.Addr().(*net.TCPAddr).Port, tlsLn.Addr().(*net.TCPAddr).Port
	return httpLn, tlsLn
}
