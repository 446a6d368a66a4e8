package acme_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
)

// newCA, newKey and ctxT are testsetup's CA, Key and Context, under the
// names the tests use.
func newCA(t testing.TB, opts testpebble.Options) *testpebble.CA { return testsetup.CA(t, opts) }
func newKey(t testing.TB) *ecdsa.PrivateKey                      { return testsetup.Key(t) }
func ctxT(t testing.TB) context.Context                          { return testsetup.Context(t) }

// newClient returns a client for ca with a fresh P-256 account key, not yet
// registered.
func newClient(t testing.TB, ca *testpebble.CA) *acme.Client {
	t.Helper()
	return &acme.Client{DirectoryURL: ca.DirectoryURL(), Key: newKey(t), HTTPClient: ca.HTTPClient()}
}

// registered returns a client with a registered account.
func registered(t testing.TB, ca *testpebble.CA) *acme.Client {
	t.Helper()
	c := newClient(t, ca)
	if _, err := c.Register(ctxT(t), acme.Account{TermsOfServiceAgreed: true, Contact: []string{"mailto:ops@example.com"}}); err != nil {
		t.Fatalf("Register: %v", err)
	}
	return c
}

// httpSolver answers http-01 challenges on the port Pebble's VA connects to.
type httpSolver struct {
	// delay, in nanoseconds, is how long each challenge request waits
	// before it is answered: the CA's validation then takes that long.
	delay atomic.Int64
	// gate, when set before the first challenge, holds every challenge
	// request until it is closed: the CA cannot validate before then.
	gate     chan struct{}
	mu       sync.Mutex
	tokens   map[string]string
	presents int
	cleanups int
}

func newHTTPSolver(t testing.TB, ca *testpebble.CA) *httpSolver {
	t.Helper()
	s := &httpSolver{tokens: map[string]string{}}
	ca.ServeHTTP01(t, s)
	return s
}

func (s *httpSolver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-r.Context().Done():
			return
		}
	}
	if d := time.Duration(s.delay.Load()); d > 0 {
		time.Sleep(d) // the simulated validation time, not synchronisation
	}
	tok, ok := strings.CutPrefix(r.URL.Path, "/.well-known/acme-challenge/")
	s.mu.Lock()
	ka, found := s.tokens[tok]
	s.mu.Unlock()
	if !ok || !found {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write([]byte(ka))
}

func (s *httpSolver) Present(_ context.Context, ch acme.Challenge) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.presents++
	s.tokens[ch.Token] = ch.KeyAuthorization
	return nil
}

func (s *httpSolver) CleanUp(_ context.Context, ch acme.Challenge) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups++
	delete(s.tokens, ch.Token)
	return nil
}

func (s *httpSolver) counts() (presents, cleanups, live int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.presents, s.cleanups, len(s.tokens)
}

func (s *httpSolver) solvers() map[string]acme.Solver {
	return map[string]acme.Solver{acme.ChallengeHTTP01: s}
}

// obtain runs Obtain for names with a fresh certificate key.
func obtain(t testing.TB, c *acme.Client, s acme.Solver, ids []acme.Identifier, mod func(*acme.ObtainRequest)) (*acme.Certificate, crypto.Signer, error) {
	t.Helper()
	key := newKey(t)
	req := acme.ObtainRequest{Identifiers: ids, CertKey: key, Solvers: map[string]acme.Solver{acme.ChallengeHTTP01: s}}
	if mod != nil {
		mod(&req)
	}
	cert, err := c.Obtain(ctxT(t), req)
	return cert, key, err
}

func mustObtain(t testing.TB, c *acme.Client, s acme.Solver, names ...string) *acme.Certificate {
	t.Helper()
	cert, _, err := obtain(t, c, s, acme.DNSNames(names...), nil)
	if err != nil {
		t.Fatalf("Obtain(%v): %v", names, err)
	}
	return cert
}

func wantIs(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want one matching %v", err, target)
	}
}

// jwsPayload returns the decoded payload of the JWS in r's body, leaving
// the body readable for the next handler.
func jwsPayload(r *http.Request) []byte {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	var jws struct{ Payload string }
	json.Unmarshal(body, &jws)
	p, _ := base64.RawURLEncoding.DecodeString(jws.Payload)
	return p
}
