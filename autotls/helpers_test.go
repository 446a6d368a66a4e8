package autotls_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/storage"
)

// env is a test CA plus the challenge servers its validation authority
// reaches (http-01 on HTTPPort, tls-alpn-01 on TLSPort), which forward to
// the Manager currently "behind the load balancer".
type env struct {
	ca      *testpebble.CA
	mu      sync.Mutex
	current *autotls.Manager
	http    http.Handler
	// failHost, when set, makes the http-01 server answer 404 for it.
	failHost atomic.Value
}

func newEnv(t testing.TB, opts testpebble.Options) *env {
	t.Helper()
	httpLn, tlsLn := bindChallengePorts(t, &opts)
	ca, err := testpebble.New(opts)
	if err != nil {
		t.Fatalf("testpebble.New: %v", err)
	}
	t.Cleanup(func() { ca.Close() })
	e := &env{ca: ca}
	e.failHost.Store("")

	srv := &http.Server{Handler: http.HandlerFunc(e.serveHTTP), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(httpLn)
	t.Cleanup(func() { srv.Close() })
	tl := tls.NewListener(tlsLn, &tls.Config{GetCertificate: e.getCertificate, NextProtos: []string{"acme-tls/1"}})
	go testpebble.ServeHandshakes(tl)
	t.Cleanup(func() { tl.Close() })
	return e
}

// bindChallengePorts listens on two free loopback ports and makes them
// the CA's http-01 and tls-alpn-01 ports: the listeners exist before the
// CA does and stay open, so no port is picked, freed and bound again — in
// between, a parallel test's socket could take it.
func bindChallengePorts(t testing.TB, opts *testpebble.Options) (httpLn, tlsLn net.Listener) {
	t.Helper()
	httpLn, tlsLn = listenLoopback(t), listenLoopback(t)
	opts.HTTPPort, opts.TLSPort = httpLn.Addr().(*net.TCPAddr).Port, tlsLn.Addr().(*net.TCPAddr).Port
	return httpLn, tlsLn
}

// listenLoopback listens on a free loopback port until the test ends.
func listenLoopback(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func (e *env) serveHTTP(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	if fh := e.failHost.Load().(string); fh != "" && host == fh {
		http.NotFound(w, r)
		return
	}
	e.mu.Lock()
	h := e.http
	e.mu.Unlock()
	if h == nil {
		http.NotFound(w, r)
		return
	}
	h.ServeHTTP(w, r)
}

func (e *env) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	e.mu.Lock()
	m := e.current
	e.mu.Unlock()
	return m.GetCertificate(hello)
}

// manager returns a Manager pointed at the test CA, made the one the
// challenge servers forward to.
func (e *env) manager(t testing.TB, store storage.Storage, mod func(*autotls.Manager)) *autotls.Manager {
	t.Helper()
	if store == nil {
		store = storage.Dir(t.TempDir())
	}
	m := &autotls.Manager{
		DirectoryURL: e.ca.DirectoryURL(),
		HTTPClient:   e.ca.HTTPClient(),
		Storage:      store,
		Hosts:        autotls.HostWhitelist("example.com", "*.example.com", "www.example.org"),
		AcceptTOS:    true,
	}
	if mod != nil {
		mod(m)
	}
	// The tests were written for a first ARI poll right after issuance;
	// TestFirstARIPollSpread checks the default.
	autotls.SetARIFirstPollForTest(m, 0)
	h := m.HTTPHandler(nil)
	e.mu.Lock()
	e.current, e.http = m, h
	e.mu.Unlock()
	t.Cleanup(func() { m.Close() })
	return m
}

// serve starts an HTTPS-less TLS server for m on loopback and returns its
// address: each connection completes a handshake and is closed.
func serve(t testing.TB, m *autotls.Manager) string {
	t.Helper()
	ln := listenLoopback(t)
	tl := tls.NewListener(ln, m.TLSConfig())
	go testpebble.ServeHandshakes(tl)
	t.Cleanup(func() { tl.Close() })
	return ln.Addr().String()
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

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

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
