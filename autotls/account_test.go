package autotls_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/storage"
)

// termsURL returns the terms of service the test CA's directory names.
func termsURL(t *testing.T, e *env) string {
	t.Helper()
	c := &acme.Client{DirectoryURL: e.ca.DirectoryURL(), HTTPClient: e.ca.HTTPClient()}
	dir, err := c.Directory(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if dir.Meta.TermsOfService == "" {
		t.Fatal("the test CA names no terms of service")
	}
	return dir.Meta.TermsOfService
}

func TestTermsOfServiceNotAccepted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	tos := termsURL(t, e)
	m := e.manager(t, nil, func(m *autotls.Manager) { m.AcceptTOS = false })
	_, err := m.GetCertificate(hello("example.com"))
	if !errors.Is(err, acme.ErrTermsNotAgreed) {
		t.Fatalf("got %v, want an error matching acme.ErrTermsNotAgreed", err)
	}
	for _, want := range []string{tos, "AcceptTOS"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if got := e.ca.Requests("newAccount"); got != 0 {
		t.Fatalf("got %d newAccount requests, want 0", got)
	}
	if got := e.ca.Requests("newOrder"); got != 0 {
		t.Fatalf("got %d newOrder requests, want 0", got)
	}
}

func TestTermsOfServiceAcceptedIsLogged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	tos := termsURL(t, e)
	var logs syncBuffer
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.Logger = slog.New(slog.NewTextHandler(&logs, nil)) // Info
	})
	if _, err := m.GetCertificate(hello("example.com")); err != nil {
		t.Fatal(err)
	}
	if got := e.ca.Requests("newAccount"); got != 1 {
		t.Fatalf("got %d newAccount requests, want 1", got)
	}
	var line string
	for l := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(l, "registered ACME account") {
			line = l
		}
	}
	if !strings.Contains(line, "level=INFO") || !strings.Contains(line, "terms_of_service=") || !strings.Contains(line, tos) {
		t.Fatalf("registration log line %q does not name the terms %q at Info", line, tos)
	}
}

func TestRootCAs(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		roots   bool
		wantErr bool
	}{
		{"the test CA's roots", true, false},
		{"the system's roots", false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, testpebble.Options{})
			m := e.manager(t, nil, func(m *autotls.Manager) {
				m.HTTPClient = nil
				if tc.roots {
					m.RootCAs = e.ca.TLSRoots()
				}
			})
			c, err := m.GetCertificate(hello("example.com"))
			if tc.wantErr {
				var unknown x509.UnknownAuthorityError
				if !errors.As(err, &unknown) {
					t.Fatalf("got %v, want x509.UnknownAuthorityError", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v, want a certificate", err)
			}
			if got := c.Leaf.DNSNames; len(got) != 1 || got[0] != "example.com" {
				t.Fatalf("got a certificate for %v, want example.com", got)
			}
		})
	}
}

// A deactivated account (tlsmint account deactivate, a compromised key) is
// answered unauthorized on every request — by Pebble and Boulder (403) and
// step-ca (401) alike — never accountDoesNotExist (RFC 8555, section
// 7.3.6). The next order registers exactly one new account, stores it and
// succeeds.
func TestDeactivatedAccountReplaced(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	store := storage.Dir(t.TempDir())
	m := e.manager(t, store, nil)
	const name = "example.com"
	first := served(t, m, name)
	old := storedAccount(t, store)
	deactivateStored(t, ctxT(t), store, &acme.Client{DirectoryURL: e.ca.DirectoryURL(), HTTPClient: e.ca.HTTPClient()})

	accounts := e.ca.Requests("newAccount")
	if err := autotls.RenewForTest(m, name); err != nil {
		t.Fatalf("renewal after the deactivation: %v", err)
	}
	if got := e.ca.Requests("newAccount") - accounts; got != 1 {
		t.Errorf("got %d newAccount requests after the deactivation, want 1", got)
	}
	if got := storedAccount(t, store); got == old {
		t.Errorf("stored account: still the deactivated %s", got)
	}
	if got := served(t, m, name); got == first {
		t.Errorf("served serial %s after the renewal, want a new certificate", got)
	}
}

// An unauthorized answer about something other than the account (the CA's
// policy for this order) keeps the account: the error is the CA's, and no
// account is registered.
func TestUnauthorizedOrderKeepsAccount(t *testing.T) {
	t.Parallel()
	var refuse atomic.Bool
	e := newEnv(t, testpebble.Options{Wrap: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/order-plz" && refuse.Load() {
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(http.StatusForbidden)
				io.WriteString(w, `{"type":"urn:ietf:params:acme:error:unauthorized","detail":"not for this account","status":403}`)
				return
			}
			next.ServeHTTP(w, r)
		})
	}})
	store := storage.Dir(t.TempDir())
	m := e.manager(t, store, nil)
	served(t, m, "example.com")
	old := storedAccount(t, store)
	refuse.Store(true)
	accounts := e.ca.Requests("newAccount")
	_, err := m.GetCertificate(hello("www.example.org"))
	if !errors.Is(err, acme.ErrUnauthorized) {
		t.Fatalf("got %v, want the CA's unauthorized", err)
	}
	if got := e.ca.Requests("newAccount") - accounts; got != 0 {
		t.Errorf("got %d newAccount requests, want 0", got)
	}
	if got := storedAccount(t, store); got != old {
		t.Errorf("stored account: got %s, want %s kept", got, old)
	}
}

// deactivateStored deactivates the account a Manager stored in store,
// through c (a client for the CA without a key).
func deactivateStored(t *testing.T, ctx context.Context, store storage.Storage, c *acme.Client) {
	t.Helper()
	keys, err := store.List(ctx, "accounts/")
	if err != nil || len(keys) != 1 {
		t.Fatalf("stored accounts: %v, %v; want one", keys, err)
	}
	b, err := store.Load(ctx, keys[0])
	if err != nil {
		t.Fatal(err)
	}
	var a struct {
		URL string `json:"url"`
		Key string `json:"private_key_pem"`
	}
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(a.Key))
	key, err := acme.ParsePrivateKey(block)
	if err != nil {
		t.Fatal(err)
	}
	c.Key, c.AccountURL = key, a.URL
	if _, err := c.DeactivateAccount(ctx); err != nil {
		t.Fatalf("deactivating %s: %v", a.URL, err)
	}
}
