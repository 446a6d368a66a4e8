package relay_test

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// orderSpy records the payloads of the newOrder requests Pebble receives.
type orderSpy struct {
	mu       sync.Mutex
	payloads []map[string]any
}

func (s *orderSpy) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/order-plz" {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var jws struct{ Payload string }
			var payload map[string]any
			if json.Unmarshal(body, &jws) == nil {
				if b, err := b64.DecodeString(jws.Payload); err == nil && json.Unmarshal(b, &payload) == nil {
					s.mu.Lock()
					s.payloads = append(s.payloads, payload)
					s.mu.Unlock()
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (s *orderSpy) last() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.payloads) == 0 {
		return nil
	}
	return s.payloads[len(s.payloads)-1]
}

// TestCertificateLifecycle runs a certificate's life through the relay
// with tlsmint's client: obtain, alternate chains, ARI passed through,
// renewal with replaces passed upstream, revocation by the account and by
// the certificate's key, revoked upstream too.
func TestCertificateLifecycle(t *testing.T) {
	t.Parallel()
	spy := &orderSpy{}
	e := newEnv(t, envOptions{pebble: testpebble.Options{AlternateRoots: 1, Wrap: spy.wrap}})
	c := e.registered(t)
	ctx := ctxT(t)
	first, err := e.obtain(t, c, acme.DNSNames("life.example.com"), nil)
	if err != nil {
		t.Fatalf("Obtain: %v", err)
	}
	// Alternate chains: both downloaded, different roots, same leaf.
	chains, err := c.FetchCertificate(ctx, first.Order.Certificate)
	if err != nil || len(chains) != 2 {
		t.Fatalf("FetchCertificate: %d chains, %v; want 2", len(chains), err)
	}
	if chains[0].TopIssuer() == chains[1].TopIssuer() || !bytes.Equal(chains[0].Leaf().Raw, chains[1].Leaf().Raw) {
		t.Fatalf("chains: roots %q and %q; want two roots for one leaf", chains[0].TopIssuer(), chains[1].TopIssuer())
	}
	e.verifyLeaf(t, chains[1], "life.example.com")

	// ARI: Pebble's window, as Pebble says it, reaches the client.
	start, end := time.Now().Add(48*time.Hour).UTC().Truncate(time.Second), time.Now().Add(72*time.Hour).UTC().Truncate(time.Second)
	if err := e.ca.SetRenewalInfo(first.Leaf(), start, end, "https://ca.example/why"); err != nil {
		t.Fatal(err)
	}
	ri, err := c.RenewalInfo(ctx, first.Leaf())
	if err != nil {
		t.Fatalf("RenewalInfo: %v", err)
	}
	if !ri.SuggestedWindow.Start.Equal(start) || !ri.SuggestedWindow.End.Equal(end) || ri.ExplanationURL != "https://ca.example/why" || ri.RetryAfter != 6*time.Hour {
		t.Fatalf("renewal info = %+v (retry %v), want Pebble's %v–%v, its explanation and Retry-After 6h", ri.SuggestedWindow, ri.RetryAfter, start, end)
	}

	// Renewal with replaces: the relay passes it upstream.
	id, _ := acme.CertificateID(first.Leaf())
	key2 := newKey(t)
	second, err := e.obtain(t, c, acme.DNSNames("life.example.com"), func(r *acme.ObtainRequest) { r.Replaces, r.CertKey = id, key2 })
	if err != nil {
		t.Fatalf("renewal: %v", err)
	}
	if second.Order.Replaces != id {
		t.Fatalf("downstream order replaces %q, want %q", second.Order.Replaces, id)
	}
	if got := spy.last()["replaces"]; got != id {
		t.Fatalf("upstream newOrder replaces = %v, want %q", got, id)
	}
	// A second replacement of the same certificate is refused.
	if _, err := c.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("life.example.com"), Replaces: id}); !errors.Is(err, acme.ErrAlreadyReplaced) {
		t.Fatalf("replacing twice: %v, want alreadyReplaced", err)
	}
	// Another account may not replace it.
	other := e.registered(t)
	if _, err := other.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("life.example.com"), Replaces: id}); !errors.Is(err, acme.ErrUnauthorized) {
		t.Fatalf("another account replacing: %v, want unauthorized", err)
	}

	// Revocation: not by another account, nor by an unrelated key.
	if err := other.RevokeCertificate(ctx, first.Leaf().Raw, nil, acme.ReasonSuperseded); !errors.Is(err, acme.ErrUnauthorized) {
		t.Fatalf("revocation by another account: %v, want unauthorized", err)
	}
	if err := other.RevokeCertificate(ctx, first.Leaf().Raw, newKey(t), acme.ReasonKeyCompromise); !errors.Is(err, acme.ErrUnauthorized) {
		t.Fatalf("revocation by another key: %v, want unauthorized", err)
	}
	if err := c.RevokeCertificate(ctx, first.Leaf().Raw, nil, 7); !errors.Is(err, acme.ErrBadRevocationReason) {
		t.Fatalf("revocation reason 7: %v, want badRevocationReason", err)
	}
	if err := c.RevokeCertificate(ctx, first.Leaf().Raw, nil, acme.ReasonSuperseded); err != nil {
		t.Fatalf("revocation by the account: %v", err)
	}
	if err := e.ca.Revoke(first.Leaf(), 0); err == nil || !strings.Contains(err.Error(), "already revoked") {
		t.Fatalf("Pebble revoking the certificate again: %v, want already revoked (the relay revoked it upstream)", err)
	}
	if err := c.RevokeCertificate(ctx, first.Leaf().Raw, nil, acme.ReasonSuperseded); !errors.Is(err, acme.ErrAlreadyRevoked) {
		t.Fatalf("revoking twice: %v, want alreadyRevoked", err)
	}
	if ri, err := c.RenewalInfo(ctx, first.Leaf()); err != nil || !ri.SuggestedWindow.End.Before(time.Now()) {
		t.Fatalf("renewal info of a revoked certificate: %+v, %v; want a window in the past", ri, err)
	}
	// By the certificate's key, which needs no account.
	stranger := e.client(t)
	if err := stranger.RevokeCertificate(ctx, second.Leaf().Raw, key2, acme.ReasonKeyCompromise); err != nil {
		t.Fatalf("revocation by the certificate key: %v", err)
	}
	if err := e.ca.Revoke(second.Leaf(), 0); err == nil {
		t.Fatal("the certificate revoked by its key is not revoked upstream")
	}
	// A certificate the relay did not issue.
	foreign := mustParse(t, e.ca.Roots()[0].Raw)
	if err := c.RevokeCertificate(ctx, foreign.Raw, nil, 0); !errors.Is(err, acme.ErrMalformed) {
		t.Fatalf("revoking a foreign certificate: %v, want malformed (404)", err)
	}
}

func mustParse(t testing.TB, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
