package relay_test

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/relay"
)

// clientCert returns a client certificate of ca with the common name and
// URI.
func clientCert(t *testing.T, ca *testsetup.Authority, cn, uri string) tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject:   pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if uri != "" {
		u, _ := url.Parse(uri)
		tmpl.URIs = []*url.URL{u}
	}
	return ca.Issue(t, tmpl)
}

// mtlsEnv is an env whose ACME API asks for client certificates of ca.
func mtlsEnv(t *testing.T, ca *testsetup.Authority, modify func(*relay.Server)) *env {
	t.Helper()
	e := newEnv(t, envOptions{noServe: true, modify: modify})
	ts := httptest.NewUnstartedServer(e.srv)
	ts.TLS = &tls.Config{ClientCAs: ca.Pool(), ClientAuth: tls.VerifyClientCertIfGiven}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	e.ts = ts
	return e
}

// clientWith returns a downstream client presenting cert (none when nil),
// with key as its account key (a fresh one when nil).
func (e *env) clientWith(t *testing.T, cert *tls.Certificate, key *ecdsa.PrivateKey) *acme.Client {
	t.Helper()
	c := e.client(t)
	if key != nil {
		c.Key = key
	}
	tr := e.ts.Client().Transport.(*http.Transport).Clone()
	if cert != nil {
		tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
	}
	c.HTTPClient = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return c
}

// TestClientCertificates: a tenant bound to client certificates is usable
// only with one of them — registration, orders and account reads — and
// each refusal is unauthorized with an audit record.
func TestClientCertificates(t *testing.T) {
	t.Parallel()
	ca := testsetup.NewAuthority(t, "clients")
	e := mtlsEnv(t, ca, nil)
	ctx := ctxT(t)
	webCert := clientCert(t, ca, "web-client", "spiffe://example.com/web")
	opsCert := clientCert(t, ca, "ops-client", "")
	pol := examplePolicy()
	pol.ClientNames = []string{"spiffe://example.com/web"}
	eab := e.tenant(t, "web", pol)

	// Without a client certificate, registering with the tenant's key is
	// refused.
	noCert := e.clientWith(t, nil, nil)
	_, err := noCert.Register(ctx, acme.Account{ExternalAccountBinding: eab})
	wantProblem(t, err, "unauthorized", http.StatusForbidden)
	if !strings.Contains(problemOf(t, err).Detail, "need its client certificate") {
		t.Errorf("detail %q, want it to say a client certificate is needed", problemOf(t, err).Detail)
	}
	// With another tenant's certificate, too.
	_, err = e.clientWith(t, &opsCert, nil).Register(ctx, acme.Account{ExternalAccountBinding: eab})
	wantProblem(t, err, "unauthorized", http.StatusForbidden)
	if d := problemOf(t, err).Detail; !strings.Contains(d, `"ops-client"`) || !strings.Contains(d, "tenant web") {
		t.Errorf("detail %q, want it to name the certificate and the tenant", d)
	}

	// With its certificate: registration and issuance.
	key := newKey(t)
	web := e.clientWith(t, &webCert, key)
	if _, err := web.Register(ctx, acme.Account{ExternalAccountBinding: eab}); err != nil {
		t.Fatalf("Register with the tenant's client certificate: %v", err)
	}
	got, err := e.obtain(t, web, acme.DNSNames("mtls.example.com"), nil)
	if err != nil {
		t.Fatalf("Obtain with the client certificate: %v", err)
	}
	if _, err := got.Leaf().Verify(verifyOpts(e.ca, got.Chains[0], "mtls.example.com")); err != nil {
		t.Fatalf("the certificate does not verify: %v", err)
	}

	// The same account key without the certificate, or with another one,
	// is refused at every request.
	for name, c := range map[string]*acme.Client{"no certificate": e.clientWith(t, nil, key), "another certificate": e.clientWith(t, &opsCert, key)} {
		if _, err := c.LookupAccount(ctx); !errors.Is(err, acme.ErrUnauthorized) {
			t.Errorf("%s: looking up the account: %v, want unauthorized", name, err)
		}
		c.AccountURL = accountURL(t, web)
		_, err := c.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("mtls.example.com")})
		if !errors.Is(err, acme.ErrUnauthorized) {
			t.Errorf("%s: newOrder: %v, want unauthorized", name, err)
		}
	}
	// Nothing but the first order reached upstream: one issuance only.
	if n := len(e.records(t, "issue")); n != 1 {
		t.Errorf("%d issue records, want 1", n)
	}
	refused := 0
	for _, r := range append(e.records(t, "newAccount"), e.records(t, "newOrder")...) {
		if r.Outcome == record.OutcomeRefused && r.Problem == "urn:ietf:params:acme:error:unauthorized" && r.Tenant == "web" {
			refused++
		}
	}
	if refused != 6 {
		t.Errorf("%d refused newAccount/newOrder records of tenant web, want 6 (2 registrations, 2 look-ups, 2 orders)", refused)
	}
}

// TestRequireClientCert: with Server.RequireClientCert, a client without
// a certificate gets unauthorized at the directory already; with one, it
// registers and obtains as usual.
func TestRequireClientCert(t *testing.T) {
	t.Parallel()
	ca := testsetup.NewAuthority(t, "clients")
	e := mtlsEnv(t, ca, func(s *relay.Server) { s.RequireClientCert = true })
	ctx := ctxT(t)
	eab := e.tenant(t, "team", examplePolicy())

	_, err := e.clientWith(t, nil, nil).Register(ctx, acme.Account{ExternalAccountBinding: eab})
	if !errors.Is(err, acme.ErrUnauthorized) {
		t.Fatalf("Register without a client certificate: %v, want unauthorized", err)
	}
	recs := e.records(t, "request")
	if len(recs) == 0 || recs[len(recs)-1].Outcome != record.OutcomeRefused || !strings.Contains(recs[len(recs)-1].Detail, "client certificate") {
		t.Errorf("audit records %+v, want the refusal for the missing client certificate", recs)
	}

	cert := clientCert(t, ca, "any-client", "")
	c := e.clientWith(t, &cert, nil)
	if _, err := c.Register(ctx, acme.Account{ExternalAccountBinding: eab}); err != nil {
		t.Fatalf("Register with a client certificate: %v", err)
	}
	if _, err := e.obtain(t, c, acme.DNSNames("required.example.com"), nil); err != nil {
		t.Fatalf("Obtain with a client certificate: %v", err)
	}

	// A certificate of another CA does not get through the handshake.
	other := clientCert(t, testsetup.NewAuthority(t, "strangers"), "any-client", "")
	if _, err := e.clientWith(t, &other, nil).Register(ctx, acme.Account{ExternalAccountBinding: eab}); err == nil {
		t.Fatal("Register with a certificate of an unknown CA succeeded")
	}
}

// Policies with bad client names are refused.
func TestClientNamesChecked(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noServe: true})
	for name, names := range map[string][]string{
		"empty":    {""},
		"control":  {"web\nclient"},
		"spaces":   {" web"},
		"too long": {strings.Repeat("a", 257)},
		"too many": strings.Split(strings.Repeat("a,", 100)+"a", ","),
	} {
		err := e.srv.PutTenant(ctxT(t), relay.Tenant{ID: "bad", Policy: relay.Policy{Names: []string{"example.com"}, ClientNames: names}})
		if !errors.Is(err, relay.ErrInvalidTenant) {
			t.Errorf("%s: PutTenant: %v, want ErrInvalidTenant", name, err)
		}
	}
}
