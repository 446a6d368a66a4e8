package solvers_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// newCA starts an in-process Pebble that validates for real (opts must not
// set AlwaysValid).
func newCA(t *testing.T, opts testpebble.Options) *testpebble.CA {
	t.Helper()
	if opts.AlwaysValid {
		t.Fatal("solver tests must validate for real")
	}
	ca, err := testpebble.New(opts)
	if err != nil {
		t.Fatalf("testpebble.New: %v", err)
	}
	t.Cleanup(func() {
		if err := ca.Close(); err != nil {
			t.Errorf("closing the CA: %v", err)
		}
	})
	return ca
}

// newKey returns a fresh P-256 key.
func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newClient returns a client with a registered account at ca.
func newClient(t *testing.T, ca *testpebble.CA) *acme.Client {
	t.Helper()
	c := &acme.Client{DirectoryURL: ca.DirectoryURL(), Key: newKey(t), HTTPClient: ca.HTTPClient(), PollInterval: 20 * time.Millisecond}
	if _, err := c.Register(testContext(t), acme.Account{TermsOfServiceAgreed: true}); err != nil {
		t.Fatalf("Register: %v", err)
	}
	return c
}

// testContext returns a context that ends with the test, bounded to 45 s.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// obtain runs Obtain with one solver and checks the issued leaf.
func obtain(t *testing.T, ca *testpebble.CA, c *acme.Client, typ string, s acme.Solver, ids []acme.Identifier) (*acme.Certificate, error) {
	t.Helper()
	cert, err := c.Obtain(testContext(t), acme.ObtainRequest{
		Identifiers:    ids,
		CertKey:        newKey(t),
		Solvers:        map[string]acme.Solver{typ: s},
		ChallengeTypes: []string{typ},
	})
	if err != nil {
		return nil, err
	}
	inter := x509.NewCertPool()
	for _, c := range cert.Chain.Certificates[1:] {
		inter.AddCert(c)
	}
	if _, err := cert.Leaf().Verify(x509.VerifyOptions{Roots: ca.RootPool(), Intermediates: inter}); err != nil {
		t.Errorf("issued leaf does not verify: %v", err)
	}
	return cert, nil
}

// serveHTTP serves h on 127.0.0.1:port until the test ends.
func serveHTTP(t *testing.T, port int, h http.Handler) {
	t.Helper()
	ln := listen(t, port)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// serveTLS serves TLS handshakes with cfg on 127.0.0.1:port until the test
// ends; each connection is closed once the handshake is done.
func serveTLS(t *testing.T, port int, cfg *tls.Config) {
	t.Helper()
	ln := tls.NewListener(listen(t, port), cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		testpebble.ServeHandshakes(ln)
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
}

func listen(t *testing.T, port int) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return ln
}

// authzStatuses returns the status of every authorization of an order.
func authzStatuses(t *testing.T, c *acme.Client, order *acme.Order) []string {
	t.Helper()
	var out []string
	for _, u := range order.Authorizations {
		a, err := c.GetAuthorization(testContext(t), u)
		if err != nil {
			t.Fatalf("GetAuthorization: %v", err)
		}
		out = append(out, a.Status)
	}
	return out
}

// orderLog records the authorization URLs of every order the CA creates,
// so that a test can inspect an order that Obtain did not return.
type orderLog struct {
	mu     sync.Mutex
	authzs []string
}

func (l *orderLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/order-plz" {
			next.ServeHTTP(w, r)
			return
		}
		tw := &teeWriter{ResponseWriter: w}
		next.ServeHTTP(tw, r)
		var o struct {
			Authorizations []string `json:"authorizations"`
		}
		if json.Unmarshal(tw.buf.Bytes(), &o) == nil {
			l.mu.Lock()
			l.authzs = append(l.authzs, o.Authorizations...)
			l.mu.Unlock()
		}
	})
}

func (l *orderLog) order() *acme.Order {
	l.mu.Lock()
	defer l.mu.Unlock()
	return &acme.Order{Authorizations: slices.Clone(l.authzs)}
}

type teeWriter struct {
	http.ResponseWriter
	buf bytes.Buffer
}

func (w *teeWriter) Write(b []byte) (int, error) {
	w.buf.Write(b)
	return w.ResponseWriter.Write(b)
}
