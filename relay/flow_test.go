package relay_test

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/relay"
	"github.com/tlsmint/tlsmint/solvers"
)

// TestTLSALPN01ThroughRelay obtains a name and an address with the
// client's tls-alpn-01 answered on the port the relay's validator uses.
func TestTLSALPN01ThroughRelay(t *testing.T) {
	t.Parallel()
	alpn := &solvers.TLSALPN01{}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", alpn.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go testpebble.ServeHandshakes(ln)
	port := ln.Addr().(*net.TCPAddr).Port
	// The address identifier: ::1 when this machine has IPv6 loopback.
	addr := netip.MustParseAddr("127.0.0.1")
	if ln6, err := tls.Listen("tcp", net.JoinHostPort("::1", strconv.Itoa(port)), alpn.TLSConfig()); err == nil {
		t.Cleanup(func() { ln6.Close() })
		go testpebble.ServeHandshakes(ln6)
		addr = netip.MustParseAddr("::1")
	}
	e := newEnv(t, envOptions{modify: func(s *relay.Server) { s.Validator.TLSPort = port }})
	c := e.registered(t)
	ids := append(acme.DNSNames("alpn.example.com"), acme.IPAddresses(addr)...)
	cert, err := c.Obtain(ctxT(t), acme.ObtainRequest{
		Identifiers: ids, CertKey: newKey(t),
		Solvers:        map[string]acme.Solver{acme.ChallengeTLSALPN01: alpn},
		ChallengeTypes: []string{acme.ChallengeTLSALPN01},
	})
	if err != nil {
		t.Fatalf("Obtain with tls-alpn-01 through the relay: %v", err)
	}
	if ips := cert.Leaf().IPAddresses; len(ips) != 1 || !ips[0].Equal(net.IP(addr.AsSlice())) {
		t.Fatalf("leaf IPs = %v, want %s", ips, addr)
	}
}

// TestAuthorizationsAndOrdersList: a deactivated authorization makes its
// order invalid, which the orders list then leaves out; a failed
// validation makes the authorization invalid with the validator's problem.
func TestAuthorizationsAndOrdersList(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.registered(t)
	ctx := ctxT(t)
	acct, err := c.GetAccount(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keep, err := c.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("keep.example.com")})
	if err != nil {
		t.Fatal(err)
	}
	drop, err := c.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("drop.example.com")})
	if err != nil {
		t.Fatal(err)
	}
	a, err := c.GetAuthorization(ctx, drop.Authorizations[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Challenges) != 3 {
		t.Fatalf("authorization of a name offers %d challenges, want http-01, dns-01 and tls-alpn-01", len(a.Challenges))
	}
	if got, err := c.DeactivateAuthorization(ctx, a); err != nil || got.Status != acme.StatusDeactivated {
		t.Fatalf("DeactivateAuthorization: %+v, %v", got, err)
	}
	if o, err := c.GetOrder(ctx, drop.URL); err != nil || o.Status != acme.StatusInvalid {
		t.Fatalf("order of a deactivated authorization: %+v, %v; want invalid", o, err)
	}
	later, err := c.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("later.example.com")})
	if err != nil {
		t.Fatal(err)
	}
	list, err := c.ListOrders(ctx, acct)
	if err != nil || len(list) != 2 || list[0] != keep.URL || list[1] != later.URL {
		t.Fatalf("ListOrders = %v, %v; want %s then %s", list, err, keep.URL, later.URL)
	}
	// Another account sees none of it.
	other := e.registered(t)
	if _, err := other.GetOrder(ctx, keep.URL); !errors.Is(err, acme.ErrUnauthorized) {
		t.Fatalf("another account's GetOrder: %v, want unauthorized", err)
	}
	if _, err := other.GetAuthorization(ctx, keep.Authorizations[0]); !errors.Is(err, acme.ErrUnauthorized) {
		t.Fatalf("another account's GetAuthorization: %v, want unauthorized", err)
	}
	// A validation that fails: nothing serves the token.
	k, err := c.GetAuthorization(ctx, keep.Authorizations[0])
	if err != nil {
		t.Fatal(err)
	}
	var ch acme.Challenge
	for _, x := range k.Challenges {
		if x.Type == acme.ChallengeHTTP01 {
			ch = x
		}
	}
	got, err := c.AcceptChallenge(ctx, ch)
	if err != nil || got.Status != acme.StatusInvalid || got.Error == nil || !errors.Is(got.Error, acme.ErrUnauthorized) {
		t.Fatalf("AcceptChallenge with nothing served: %+v, %v; want invalid with unauthorized", got, err)
	}
	if _, err := c.WaitAuthorization(ctx, k.URL); !errors.Is(err, acme.ErrAuthorizationInvalid) {
		t.Fatalf("WaitAuthorization: %v, want invalid", err)
	}
	// Accepting it again answers the challenge as it is.
	if again, err := c.AcceptChallenge(ctx, ch); err != nil || again.Status != acme.StatusInvalid {
		t.Fatalf("second AcceptChallenge: %+v, %v", again, err)
	}
}

// TestConcurrentClients runs several downstream clients at once (for the
// race detector and the locks).
func TestConcurrentClients(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := range 4 {
		c := e.registered(t)
		wg.Go(func() {
			name := []string{"c0.example.com", "c1.example.com", "c2.example.com", "c3.example.com"}[i]
			if _, err := e.obtain(t, c, acme.DNSNames(name, "shared.example.com"), nil); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Obtain: %v", err)
	}
}

// TestOnDecision: OnDecision sees the records AuditLog gets — accepted
// requests, refusals with their problem, and the background issuance —
// also without an AuditLog.
func TestOnDecision(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []record.Audit
	e := newEnv(t, envOptions{modify: func(s *relay.Server) {
		s.AuditLog = nil
		s.OnDecision = func(r record.Audit) {
			mu.Lock()
			got = append(got, r)
			mu.Unlock()
		}
	}})
	c := e.registered(t)
	if _, err := e.obtain(t, c, acme.DNSNames("decisions.example.com"), nil); err != nil {
		t.Fatal(err)
	}
	_, err := e.obtain(t, c, acme.DNSNames("outside.example.net"), nil)
	wantProblem(t, err, "rejectedIdentifier", 0)
	// The issue record is made before the issuance's done channel closes,
	// which the finalize answer waited for.
	has := func(op, outcome, problem string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range got {
			if r.Operation == relay.OperationPrefix+op && r.Outcome == outcome && r.Kind == record.KindDecision && strings.HasSuffix(r.Problem, problem) {
				return true
			}
		}
		return false
	}
	for _, w := range []struct{ op, outcome, problem string }{
		{"newAccount", record.OutcomeOK, ""},
		{"newOrder", record.OutcomeOK, ""},
		{"finalize", record.OutcomeOK, ""},
		{"issue", record.OutcomeOK, ""},
		{"newOrder", record.OutcomeRefused, "rejectedIdentifier"},
	} {
		if !has(w.op, w.outcome, w.problem) {
			t.Errorf("no %s %s %s decision among %d records", w.op, w.outcome, w.problem, len(got))
		}
	}
}

// TestOtherAccountsResources: account B, signing with its own key and
// kid, gets unauthorized (403) for every resource of account A it names
// (account, orders list, order, finalize, authorization read and
// deactivation, challenge read and validation, certificate and its
// alternates), and A's objects are unchanged.
func TestOtherAccountsResources(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{pebble: newPebbleOptions()})
	ctx := ctxT(t)
	a := e.registered(t)
	cert, err := e.obtain(t, a, acme.DNSNames("mine.example.com"), nil)
	if err != nil {
		t.Fatal(err)
	}
	pending, err := a.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("pending.example.com")})
	if err != nil {
		t.Fatal(err)
	}
	authz, err := a.GetAuthorization(ctx, pending.Authorizations[0])
	if err != nil {
		t.Fatal(err)
	}
	var ready *acme.Order
	if ready, err = a.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("ready.example.com")}); err != nil {
		t.Fatal(err)
	}
	authorize(t, e, a, ready)
	b := e.registered(t)
	bKID := accountURL(t, b)
	csr, _ := acme.CSR(newKey(t), ready.Identifiers)
	for _, tc := range []struct {
		name, url, payload string
	}{
		{"account", accountURL(t, a), ""},
		{"account update", accountURL(t, a), `{"contact":["mailto:evil@example.org"]}`},
		{"account deactivation", accountURL(t, a), `{"status":"deactivated"}`},
		{"orders list", accountURL(t, a) + "/orders", ""},
		{"order", pending.URL, ""},
		{"finalize", ready.Finalize, `{"csr":"` + b64.EncodeToString(csr) + `"}`},
		{"authorization", authz.URL, ""},
		{"authorization deactivation", authz.URL, `{"status":"deactivated"}`},
		{"challenge", authz.Challenges[0].URL, ""},
		{"challenge validation", authz.Challenges[0].URL, `{}`},
		{"certificate", cert.Order.Certificate, ""},
		{"alternate chain", cert.Order.Certificate + "/1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, p, _ := e.signedPost(t, b.Key, bKID, tc.url, []byte(tc.payload))
			if code != http.StatusForbidden || p == nil || p.Type != acme.ErrUnauthorized.Type {
				t.Fatalf("got %d %v, want 403 unauthorized", code, p)
			}
		})
	}
	if acct, err := a.GetAccount(ctx); err != nil || acct.Status != acme.StatusValid || len(acct.Contact) != 1 || acct.Contact[0] != "mailto:dev@example.com" {
		t.Fatalf("A's account after B's requests: %+v, %v", acct, err)
	}
	if got, err := a.GetAuthorization(ctx, authz.URL); err != nil || got.Status != acme.StatusPending || got.Challenges[0].Status != acme.StatusPending {
		t.Fatalf("A's authorization after B's requests: %+v, %v; want pending", got, err)
	}
	if got, err := a.GetOrder(ctx, ready.URL); err != nil || got.Status != acme.StatusReady {
		t.Fatalf("A's ready order after B's finalize: %+v, %v; want ready", got, err)
	}
}
