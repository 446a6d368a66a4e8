package relay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/relay"
)

// admin sends one administration request and returns the status and body.
func admin(t *testing.T, h http.Handler, method, path, token string, body string) (int, []byte) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	b, _ := io.ReadAll(w.Result().Body)
	return w.Code, b
}

func TestAdminAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	h := e.srv.AdminHandler()
	for _, tok := range []string{"", "wrong"} {
		if code, _ := admin(t, h, "GET", "/tenants", tok, ""); code != http.StatusUnauthorized {
			t.Fatalf("token %q: %d, want 401", tok, code)
		}
	}
	if code, b := admin(t, h, "PUT", "/tenants/web", adminToken, `{"names":["example.com"],"typo":1}`); code != http.StatusBadRequest {
		t.Fatalf("policy with an unknown field: %d %s, want 400", code, b)
	}
	if code, b := admin(t, h, "PUT", "/tenants/web", adminToken, `{"names":["example.com"],"rate_limit":{"order":10,"period":"1h"}}`); code != http.StatusBadRequest || !bytes.Contains(b, []byte("order")) {
		t.Fatalf("policy with a misspelt rate limit field: %d %s, want 400 naming it", code, b)
	}
	if code, b := admin(t, h, "PUT", "/tenants/web", adminToken, `{"names":["bad name"]}`); code != http.StatusBadRequest {
		t.Fatalf("policy with a bad name: %d %s, want 400", code, b)
	}
	if code, b := admin(t, h, "PUT", "/tenants/Bad%20ID", adminToken, `{}`); code != http.StatusBadRequest {
		t.Fatalf("bad tenant ID: %d %s, want 400", code, b)
	}
	code, b := admin(t, h, "PUT", "/tenants/web", adminToken, `{"names":["example.com"],"max_names":5,"rate_limit":{"orders":10,"period":"1h"},"key_types":["P-256"]}`)
	if code != http.StatusOK {
		t.Fatalf("PUT tenant: %d %s", code, b)
	}
	var got relay.Tenant
	if err := json.Unmarshal(b, &got); err != nil || got.ID != "web" || got.Policy.MaxNames != 5 || got.Policy.RateLimit.Period != time.Hour || got.Created.IsZero() {
		t.Fatalf("PUT tenant answered %s (%v)", b, err)
	}
	if code, b := admin(t, h, "GET", "/tenants", adminToken, ""); code != 200 || !bytes.Contains(b, []byte(`"id":"web"`)) {
		t.Fatalf("GET tenants: %d %s", code, b)
	}
	code, b = admin(t, h, "POST", "/tenants/web/eab", adminToken, "")
	if code != http.StatusCreated {
		t.Fatalf("POST eab: %d %s", code, b)
	}
	var minted struct {
		KeyID   string `json:"key_id"`
		HMACKey string `json:"hmac_key"`
	}
	json.Unmarshal(b, &minted)
	mac, err := acme.DecodeEABKey(minted.HMACKey)
	if err != nil || len(mac) != 32 {
		t.Fatalf("minted MAC key %q: %v", minted.HMACKey, err)
	}
	code, b = admin(t, h, "GET", "/tenants/web/eab", adminToken, "")
	if code != 200 || !bytes.Contains(b, []byte(minted.KeyID)) || bytes.Contains(b, []byte(minted.HMACKey)) {
		t.Fatalf("GET eab: %d %s; want the key ID and never the MAC key", code, b)
	}
	c := e.client(t)
	if _, err := c.Register(ctxT(t), acme.Account{ExternalAccountBinding: &acme.ExternalAccountBinding{KeyID: minted.KeyID, HMACKey: mac}}); err != nil {
		t.Fatalf("Register with the minted key: %v", err)
	}
	if code, _ := admin(t, h, "DELETE", "/eab/"+minted.KeyID, adminToken, ""); code != http.StatusNoContent {
		t.Fatalf("DELETE eab: %d", code)
	}
	if code, _ := admin(t, h, "DELETE", "/eab/"+minted.KeyID, adminToken, ""); code != http.StatusNotFound {
		t.Fatalf("DELETE eab twice: %d, want 404", code)
	}
	late := e.client(t)
	if _, err := late.Register(ctxT(t), acme.Account{ExternalAccountBinding: &acme.ExternalAccountBinding{KeyID: minted.KeyID, HMACKey: mac}}); !errors.Is(err, acme.ErrUnauthorized) {
		t.Fatalf("Register with a deleted key: %v, want unauthorized", err)
	}
	if code, _ := admin(t, h, "DELETE", "/tenants/web", adminToken, ""); code != http.StatusNoContent {
		t.Fatalf("DELETE tenant: %d", code)
	}
	if code, _ := admin(t, h, "GET", "/tenants/web", adminToken, ""); code != http.StatusNotFound {
		t.Fatalf("GET deleted tenant: %d, want 404", code)
	}
	if code, _ := admin(t, h, "POST", "/tenants/nobody/eab", adminToken, ""); code != http.StatusNotFound {
		t.Fatalf("EAB key for a missing tenant: %d, want 404", code)
	}
	// An admin API limited to other addresses refuses even the right token.
	e.srv.AdminSources = ipRanges("10.0.0.0/8")
	if code, _ := admin(t, e.srv.AdminHandler(), "GET", "/tenants", adminToken, ""); code != http.StatusForbidden {
		t.Fatalf("admin from a refused source: %d, want 403", code)
	}
	if err := e.log.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if recs := e.records(t, "admin.newEABKey"); len(recs) != 2 || recs[0].Tenant != "web" || recs[0].Outcome != record.OutcomeOK || recs[1].Outcome != record.OutcomeRefused {
		t.Fatalf("newEABKey audit records = %+v", recs)
	}
	refused := 0
	for _, r := range e.records(t, "admin.refused") {
		if r.Outcome == record.OutcomeRefused {
			refused++
		}
	}
	if refused != 3 {
		t.Fatalf("%d refused admin requests audited, want 3", refused)
	}
}

func TestTenantRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	pol := examplePolicy()
	pol.RateLimit = relay.RateLimit{Orders: 2, Period: time.Hour}
	eab := e.tenant(t, "limited", pol)
	c := e.client(t)
	if _, err := c.Register(ctxT(t), acme.Account{ExternalAccountBinding: eab}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := c.NewOrder(ctxT(t), acme.OrderRequest{Identifiers: acme.DNSNames("rl.example.com")}); err != nil {
			t.Fatalf("order %d: %v", i, err)
		}
	}
	_, err := c.NewOrder(ctxT(t), acme.OrderRequest{Identifiers: acme.DNSNames("rl.example.com")})
	wantProblem(t, err, "rateLimited", http.StatusTooManyRequests)
	if p := problemOf(t, err); p.RetryAfter < 59*time.Minute || p.RetryAfter > time.Hour+time.Minute {
		t.Fatalf("Retry-After %v, want about an hour", p.RetryAfter)
	}
	// Another tenant has its own budget.
	if _, err := e.registered(t).NewOrder(ctxT(t), acme.OrderRequest{Identifiers: acme.DNSNames("rl.example.com")}); err != nil {
		t.Fatalf("another tenant's order: %v", err)
	}
}

func TestSourceAllowLists(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	pol := examplePolicy()
	pol.Sources = ipRanges("10.0.0.0/8")
	eab := e.tenant(t, "remote", pol)
	c := e.client(t)
	if _, err := c.Register(ctxT(t), acme.Account{ExternalAccountBinding: eab}); !errors.Is(err, acme.ErrUnauthorized) {
		t.Fatalf("registering from outside the tenant's sources: %v, want unauthorized", err)
	}
	local := e.registered(t) // tenant team: any source
	e2 := newEnv(t, envOptions{modify: func(s *relay.Server) { s.AllowedSources = ipRanges("10.0.0.0/8") }})
	if _, err := e2.client(t).Register(ctxT(t), acme.Account{ExternalAccountBinding: e2.tenant(t, "team", examplePolicy())}); !errors.Is(err, acme.ErrUnauthorized) {
		t.Fatalf("a client outside AllowedSources: %v, want unauthorized", err)
	}
	// A tenant narrowed later refuses its existing accounts.
	pol2 := examplePolicy()
	pol2.Sources = ipRanges("192.0.2.0/24")
	if err := e.srv.PutTenant(ctxT(t), relay.Tenant{ID: "team", Policy: pol2}); err != nil {
		t.Fatal(err)
	}
	if _, err := local.GetAccount(ctxT(t)); !errors.Is(err, acme.ErrUnauthorized) {
		t.Fatalf("an account whose tenant no longer allows this source: %v, want unauthorized", err)
	}
}

// failSolver fails every challenge: with it, only pre-authorized names can
// be obtained.
type failSolver struct{ presented int }

func (f *failSolver) Present(context.Context, acme.Challenge) error {
	f.presented++
	return errors.New("this solver answers nothing")
}
func (f *failSolver) CleanUp(context.Context, acme.Challenge) error { return nil }

func TestPreAuthorized(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	pol := examplePolicy()
	pol.PreAuthorized = []string{"internal.example.com"}
	eab := e.tenant(t, "vouched", pol)
	c := e.client(t)
	if _, err := c.Register(ctxT(t), acme.Account{ExternalAccountBinding: eab}); err != nil {
		t.Fatal(err)
	}
	fs := &failSolver{}
	cert, err := c.Obtain(ctxT(t), acme.ObtainRequest{Identifiers: acme.DNSNames("api.internal.example.com"), CertKey: newKey(t), Solvers: map[string]acme.Solver{acme.ChallengeHTTP01: fs}})
	if err != nil {
		t.Fatalf("Obtain of a pre-authorized name: %v", err)
	}
	if fs.presented != 0 {
		t.Fatalf("the solver was asked %d times, want never", fs.presented)
	}
	e.verifyLeaf(t, cert.Chain, "api.internal.example.com")
	// A name that is allowed but not vouched for still needs a validation.
	if _, err := c.Obtain(ctxT(t), acme.ObtainRequest{Identifiers: acme.DNSNames("other.example.com"), CertKey: newKey(t), Solvers: map[string]acme.Solver{acme.ChallengeHTTP01: fs}}); err == nil || fs.presented != 1 {
		t.Fatalf("Obtain of a name not vouched for: %v (presented %d), want the solver's failure", err, fs.presented)
	}
}

// dnsSolver answers dns-01 in Pebble's mock DNS (which both the relay's
// validator and Pebble's ask).
type dnsSolver struct{ e *env }

func (d dnsSolver) Present(_ context.Context, ch acme.Challenge) error {
	d.e.ca.DNS().AddTXT(ch.DNS01TXTRecordName(), ch.DNS01TXTValue())
	return nil
}

func (d dnsSolver) CleanUp(_ context.Context, ch acme.Challenge) error {
	d.e.ca.DNS().DeleteTXT(ch.DNS01TXTRecordName(), ch.DNS01TXTValue())
	return nil
}

func TestWildcardDNS01(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.upstream.Solvers[acme.ChallengeDNS01] = dnsSolver{e}
	c := e.registered(t)
	cert, err := c.Obtain(ctxT(t), acme.ObtainRequest{
		Identifiers: acme.DNSNames("*.wild.example.com", "wild.example.com"), CertKey: newKey(t),
		Solvers:        map[string]acme.Solver{acme.ChallengeDNS01: dnsSolver{e}},
		ChallengeTypes: []string{acme.ChallengeDNS01},
	})
	if err != nil {
		t.Fatalf("Obtain of a wildcard through the relay: %v", err)
	}
	e.verifyLeaf(t, cert.Chain, "anything.wild.example.com")
	// A wildcard authorization offers dns-01 only.
	o, err := c.NewOrder(ctxT(t), acme.OrderRequest{Identifiers: acme.DNSNames("*.only.example.com")})
	if err != nil {
		t.Fatal(err)
	}
	a, err := c.GetAuthorization(ctxT(t), o.Authorizations[0])
	if err != nil {
		t.Fatal(err)
	}
	if !a.Wildcard || a.Identifier.Value != "only.example.com" || len(a.Challenges) != 1 || a.Challenges[0].Type != acme.ChallengeDNS01 {
		t.Fatalf("wildcard authorization = %+v", a)
	}
}

// TestTenantRecreated: the accounts of a deleted tenant stay refused when
// a tenant of the same ID is created again (for another team, say); the
// new tenant's own accounts work, and replacing a tenant's policy keeps
// its accounts.
func TestTenantRecreated(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := ctxT(t)
	old := e.client(t)
	if _, err := old.Register(ctx, acme.Account{ExternalAccountBinding: e.tenant(t, "phoenix", examplePolicy())}); err != nil {
		t.Fatal(err)
	}
	// Replacing the policy keeps the accounts.
	if err := e.srv.PutTenant(ctx, relay.Tenant{ID: "phoenix", Policy: examplePolicy()}); err != nil {
		t.Fatal(err)
	}
	if _, err := old.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("a.example.com")}); err != nil {
		t.Fatalf("order after the policy was replaced: %v", err)
	}
	if err := e.srv.DeleteTenant(ctx, "phoenix"); err != nil {
		t.Fatal(err)
	}
	fresh := e.client(t)
	if _, err := fresh.Register(ctx, acme.Account{ExternalAccountBinding: e.tenant(t, "phoenix", examplePolicy())}); err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("b.example.com")}); err != nil {
		t.Fatalf("the new tenant's account: %v", err)
	}
	_, err := old.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("c.example.com")})
	wantProblem(t, err, "unauthorized", 403)
	again := &acme.Client{DirectoryURL: e.dirURL(), Key: old.Key, HTTPClient: e.ts.Client()}
	_, err = again.LookupAccount(ctx)
	wantProblem(t, err, "unauthorized", 403)
}
