package autotls_test

import (
	"crypto/x509"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
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
