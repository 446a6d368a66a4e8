package solvers_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
)

// newCA starts an in-process Pebble that validates for real (opts must not
// set AlwaysValid).
func newCA(t *testing.T, opts testpebble.Options) *testpebble.CA {
	t.Helper()
	if opts.AlwaysValid {
		t.Fatal("solver tests must validate for real")
	}
	return testsetup.CA(t, opts)
}

// newKey, newClient and testContext are testsetup's Key, Registered and
// Context, under the names the tests use.
func newKey(t testing.TB) *ecdsa.PrivateKey                  { return testsetup.Key(t) }
func newClient(t *testing.T, ca *testpebble.CA) *acme.Client { return testsetup.Registered(t, ca) }
func testContext(t *testing.T) context.Context               { return testsetup.Context(t) }

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
