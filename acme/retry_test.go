package acme_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// Transient failures of requests that are safe to repeat are retried inside
// the call; a newOrder that may have reached the server is not.
func TestTransientRetries(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		path   string
		fails  int32
		fault  func(w http.ResponseWriter)
		wantOK bool
		want   int // requests the CA saw on path
	}{
		{"authz 503 twice", "/authZ/", 2, func(w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) }, true, 0},
		{"authz connection reset", "/authZ/", 1, nil, true, 0},
		// Both the authorization fetch and the clean-up's look-up give up
		// after the retries.
		{"authz 503 always", "/authZ/", 1000, func(w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) }, false, 2 * (1 + acme.MaxTransientRetries)},
		{"newOrder 503 once is not repeated", "/order-plz", 1, func(w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) }, false, 1},
		{"directory 502 twice", "/dir", 2, func(w http.ResponseWriter) { w.WriteHeader(http.StatusBadGateway) }, true, 0},
		{"newNonce 500 twice", "/nonce-plz", 2, func(w http.ResponseWriter) { w.WriteHeader(http.StatusInternalServerError) }, true, 0},
		// A Retry-After past the bound is the caller's to obey: the
		// first newNonce (Register's) is not repeated.
		{"newNonce 503 with a long Retry-After is not repeated", "/nonce-plz", 1000, func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "60")
			w.WriteHeader(http.StatusServiceUnavailable)
		}, false, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var armed atomic.Bool
			var left atomic.Int32
			left.Store(tc.fails)
			var seen atomic.Int32
			ca := faultCA(t, func(w http.ResponseWriter, r *http.Request) bool {
				if !armed.Load() || !strings.HasPrefix(r.URL.Path, tc.path) {
					return false
				}
				seen.Add(1)
				if left.Add(-1) < 0 {
					return false
				}
				if tc.fault == nil { // reset the connection
					if hj, ok := w.(http.Hijacker); ok {
						if conn, _, err := hj.Hijack(); err == nil {
							conn.Close()
							return true
						}
					}
					panic(http.ErrAbortHandler)
				}
				tc.fault(w)
				return true
			})
			s := newHTTPSolver(t, ca)
			c := newClient(t, ca)
			if tc.path == "/dir" || tc.path == "/nonce-plz" {
				armed.Store(true) // before the first request
			}
			if _, err := c.Register(ctxT(t), acme.Account{TermsOfServiceAgreed: true}); err != nil {
				if tc.wantOK {
					t.Fatalf("Register: %v", err)
				}
			}
			armed.Store(true)
			_, _, err := obtain(t, c, s, acme.DNSNames("retry.example.com"), nil)
			if tc.wantOK && err != nil {
				t.Fatalf("Obtain: %v, want success after the retries", err)
			}
			if !tc.wantOK && err == nil {
				t.Fatal("Obtain succeeded, want the failure")
			}
			if tc.want > 0 && int(seen.Load()) != tc.want {
				t.Errorf("the CA saw %d requests on %s, want %d", seen.Load(), tc.path, tc.want)
			}
		})
	}
}

// Identifiers built by hand are normalised before the order and the CSR.
func TestHandBuiltIdentifiersNormalised(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	s := newHTTPSolver(t, ca)
	c := registered(t, ca)
	ids := []acme.Identifier{{Type: acme.IdentifierDNS, Value: "MiXed.Example.COM."}, {Type: acme.IdentifierIP, Value: "::ffff:127.0.0.1"}}
	cert, _, err := obtain(t, c, s, ids, nil)
	if err != nil {
		t.Fatalf("Obtain: %v", err)
	}
	leaf := cert.Leaf()
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "mixed.example.com" || len(leaf.IPAddresses) != 1 || leaf.IPAddresses[0].String() != "127.0.0.1" {
		t.Fatalf("certificate for %v %v, want mixed.example.com and 127.0.0.1", leaf.DNSNames, leaf.IPAddresses)
	}
	for _, bad := range [][]acme.Identifier{
		{{Type: acme.IdentifierDNS, Value: "."}},
		{{Type: acme.IdentifierIP, Value: "300.1.1.1"}},
		{{Type: "email", Value: "a@b"}},
	} {
		if _, err := acme.NormalizeIdentifiers(bad); err == nil {
			t.Errorf("NormalizeIdentifiers(%v) = nil error, want one", bad)
		}
	}
}

// An order for other identifiers than requested is refused, not finalized.
func TestOrderIdentifierMismatch(t *testing.T) {
	t.Parallel()
	ca := rewriteCA(t, "/order-plz", func(_ *http.Request, obj map[string]any) {
		obj["identifiers"] = []any{map[string]any{"type": "dns", "value": "evil.example.net"}}
	})
	s := newHTTPSolver(t, ca)
	c := registered(t, ca)
	_, _, err := obtain(t, c, s, acme.DNSNames("good.example.com"), nil)
	wantIs(t, err, acme.ErrOrderMismatch)
	if n := ca.Requests("finalize"); n != 0 {
		t.Fatalf("%d finalize requests, want 0", n)
	}
}

// An Ed25519 account key is refused before any request.
func TestUnsupportedAccountKeyNoRequest(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := &acme.Client{DirectoryURL: ca.DirectoryURL(), HTTPClient: ca.HTTPClient(), Key: priv, AccountURL: "https://127.0.0.1/my-account/1"}
	_, err = c.Register(ctxT(t), acme.Account{TermsOfServiceAgreed: true})
	wantIs(t, err, acme.ErrUnsupportedKey)
	_, err = c.LookupAccount(ctxT(t))
	wantIs(t, err, acme.ErrUnsupportedKey)
	_, err = c.NewOrder(ctxT(t), acme.OrderRequest{Identifiers: acme.DNSNames("ed.example.com")})
	wantIs(t, err, acme.ErrUnsupportedKey)
	if n := totalRequests(ca); n != 0 {
		t.Fatalf("%d requests, want none", n)
	}
}

// A 403 saying the account did not request the certificate being replaced
// is retried once without replaces.
func TestReplacesRefusedForOtherAccount(t *testing.T) {
	t.Parallel()
	var refused atomic.Int32
	ca := faultCA(t, func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/order-plz" {
			return false
		}
		payload := jwsPayload(r)
		if !bytes.Contains(payload, []byte(`"replaces"`)) {
			return false
		}
		refused.Add(1)
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"type":"urn:ietf:params:acme:error:unauthorized","detail":"requester account did not request the certificate being replaced by this order","status":403}`)
		return true
	})
	s := newHTTPSolver(t, ca)
	c := registered(t, ca)
	cert, _, err := obtain(t, c, s, acme.DNSNames("other.example.com"), func(r *acme.ObtainRequest) { r.Replaces = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE" })
	if err != nil {
		t.Fatalf("Obtain: %v", err)
	}
	if refused.Load() != 1 || cert.Order.Replaces != "" {
		t.Fatalf("%d refusals, order replaces %q; want 1 and none", refused.Load(), cert.Order.Replaces)
	}
}
