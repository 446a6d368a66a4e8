package acme_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
)

func verifyChain(t *testing.T, ca *testpebble.CA, ch *acme.Chain, name string) {
	t.Helper()
	inter := x509.NewCertPool()
	for _, c := range ch.Certificates[1:] {
		inter.AddCert(c)
	}
	if _, err := ch.Leaf().Verify(x509.VerifyOptions{DNSName: name, Roots: ca.RootPool(), Intermediates: inter}); err != nil {
		t.Fatalf("chain does not verify for %q: %v", name, err)
	}
}

func TestObtainHTTP01(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	s := newHTTPSolver(t, ca)
	c := registered(t, ca)

	cert, key, err := obtain(t, c, s, acme.DNSNames("www.example.com", "example.com"), nil)
	if err != nil {
		t.Fatalf("Obtain: %v", err)
	}
	verifyChain(t, ca, cert.Chain, "www.example.com")
	verifyChain(t, ca, cert.Chain, "example.com")
	if !cert.Leaf().PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
		t.Fatal("leaf does not carry the certificate key")
	}
	if cert.Order.URL == "" || cert.Order.Status != acme.StatusValid {
		t.Fatalf("order = %+v, want valid with a URL", cert.Order)
	}
	presents, cleanups, live := s.counts()
	if presents != 2 || cleanups != 2 || live != 0 {
		t.Fatalf("solver presents=%d cleanups=%d live=%d, want 2, 2, 0", presents, cleanups, live)
	}
}

// TestObtainOnOrder: OnOrder is called once with the placed order, whose
// URL is the finalized order's, before the authorizations are solved.
func TestObtainOnOrder(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	s := newHTTPSolver(t, ca)
	c := registered(t, ca)
	var got []*acme.Order
	var presentsAtOrder int
	cert, _, err := obtain(t, c, s, acme.DNSNames("onorder.example.com"), func(r *acme.ObtainRequest) {
		r.OnOrder = func(o *acme.Order) { got = append(got, o); presentsAtOrder, _, _ = s.counts() }
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].URL == "" || got[0].URL != cert.Order.URL || got[0].Status != acme.StatusPending || presentsAtOrder != 0 {
		t.Fatalf("OnOrder got %+v (presents before: %d); want the pending order %s once, before any challenge", got, presentsAtOrder, cert.Order.URL)
	}
}

func TestObtainIPIdentifier(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	s := newHTTPSolver(t, ca)
	c := registered(t, ca)
	cert, _, err := obtain(t, c, s, acme.IPAddresses(netip.MustParseAddr("127.0.0.1")), nil)
	if err != nil {
		t.Fatalf("Obtain: %v", err)
	}
	ips := cert.Leaf().IPAddresses
	if len(ips) != 1 || !ips[0].Equal([]byte{127, 0, 0, 1}) || len(cert.Leaf().DNSNames) != 0 {
		t.Fatalf("leaf IPs = %v, DNS = %v; want exactly 127.0.0.1", ips, cert.Leaf().DNSNames)
	}
}

func TestObtainProfile(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{Profiles: map[string]time.Duration{
		"classic":    90 * 24 * time.Hour,
		"shortlived": 6 * 24 * time.Hour,
	}})
	s := newHTTPSolver(t, ca)
	c := registered(t, ca)
	dir, err := c.Directory(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := dir.Meta.Profiles["shortlived"]; !ok {
		t.Fatalf("directory profiles = %v, want shortlived", dir.Meta.Profiles)
	}
	cert, _, err := obtain(t, c, s, acme.DNSNames("short.example.com"), func(r *acme.ObtainRequest) { r.Profile = "shortlived" })
	if err != nil {
		t.Fatalf("Obtain: %v", err)
	}
	life := cert.Leaf().NotAfter.Sub(cert.Leaf().NotBefore)
	if life > 7*24*time.Hour {
		t.Fatalf("shortlived certificate lives %v, want about 6 days", life)
	}
	if cert.Order.Profile != "shortlived" {
		t.Fatalf("order profile = %q, want shortlived", cert.Order.Profile)
	}
	// A profile the CA does not offer is refused before any request.
	before := ca.Requests("newOrder")
	_, _, err = obtain(t, c, s, acme.DNSNames("x.example.com"), func(r *acme.ObtainRequest) { r.Profile = "nope" })
	wantIs(t, err, acme.ErrInvalidProfile)
	if got := ca.Requests("newOrder"); got != before {
		t.Fatalf("newOrder requests %d -> %d for an unknown profile, want none", before, got)
	}
}

func TestAlternateChains(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{AlternateRoots: 2, ChainLength: 2})
	s := newHTTPSolver(t, ca)
	c := registered(t, ca)
	cert := mustObtain(t, c, s, "chains.example.com")
	if len(cert.Chains) != 3 {
		t.Fatalf("got %d chains, want 3 (default + 2 alternates)", len(cert.Chains))
	}
	seen := map[string]bool{}
	for _, ch := range cert.Chains {
		verifyChain(t, ca, ch, "chains.example.com")
		seen[ch.TopIssuer()] = true
	}
	if len(seen) != 3 {
		t.Fatalf("chains lead to roots %v, want 3 distinct", seen)
	}
	want := cert.Chains[2].TopIssuer()
	if got := acme.PreferChain(cert.Chains, want); got != cert.Chains[2] {
		t.Fatalf("PreferChain(%q) picked the chain to %q", want, got.TopIssuer())
	}
	if got := acme.PreferChain(cert.Chains, "no such root"); got != cert.Chains[0] {
		t.Fatal("PreferChain with an unknown name did not fall back to the default chain")
	}
	// Obtain honours PreferredChain.
	cert2, _, err := obtain(t, c, s, acme.DNSNames("chains2.example.com"), func(r *acme.ObtainRequest) { r.PreferredChain = want })
	if err != nil {
		t.Fatal(err)
	}
	if cert2.Chain.TopIssuer() != want {
		t.Fatalf("Obtain chose chain to %q, want %q", cert2.Chain.TopIssuer(), want)
	}
}

// failingSolver serves a wrong key authorization, so validation fails.
type failingSolver struct{ *httpSolver }

func (f *failingSolver) Present(ctx context.Context, ch acme.Challenge) error {
	ch.KeyAuthorization = "wrong"
	return f.httpSolver.Present(ctx, ch)
}

func TestObtainValidationFailure(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	c := registered(t, ca)
	// Wrong key authorization: the CA's validation fails.
	f := &failingSolver{newHTTPSolver(t, ca)}
	_, _, err := obtain(t, c, f, acme.DNSNames("fail.example.com"), nil)
	wantIs(t, err, acme.ErrAuthorizationInvalid)
	wantIs(t, err, acme.ErrUnauthorized)
	if _, cleanups, live := f.counts(); cleanups != 1 || live != 0 {
		t.Fatalf("cleanups=%d live=%d after failure, want 1, 0", cleanups, live)
	}
}

// presentFails fails in Present, as a DNS provider might.
type presentFails struct{ cleaned int }

var errProvider = errors.New("provider is down")

func (p *presentFails) Present(context.Context, acme.Challenge) error { return errProvider }
func (p *presentFails) CleanUp(context.Context, acme.Challenge) error { p.cleaned++; return nil }

func TestObtainPresentFailureDeactivatesAuthorizations(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	c := registered(t, ca)
	p := &presentFails{}
	_, _, err := obtain(t, c, p, acme.DNSNames("a.example.com"), nil)
	wantIs(t, err, errProvider)
	if got := ca.Requests("challenge"); got != 0 {
		t.Fatalf("%d challenge POSTs after a failed Present, want 0", got)
	}
	// authz GET once in the flow, once before deactivation, once to deactivate.
	if got := ca.Requests("authz"); got != 3 {
		t.Fatalf("%d authz requests, want 3 (get, re-get, deactivate)", got)
	}
	if p.cleaned != 0 {
		t.Fatalf("CleanUp called %d times for a challenge never presented", p.cleaned)
	}
}

// blockingSolver's Present succeeds; Wait calls waiting (if set), then
// blocks until the context ends.
type blockingSolver struct {
	httpSolver
	waiting       func()
	cleanupCtxErr error
}

func (b *blockingSolver) Wait(ctx context.Context, _ acme.Challenge) error {
	if b.waiting != nil {
		b.waiting()
	}
	<-ctx.Done()
	return ctx.Err()
}

func (b *blockingSolver) CleanUp(ctx context.Context, ch acme.Challenge) error {
	b.cleanupCtxErr = ctx.Err()
	return b.httpSolver.CleanUp(ctx, ch)
}

func TestObtainCancelledStillCleansUp(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	c := registered(t, ca)
	// The context ends while the solver waits, however long the steps
	// before took: a fixed deadline could end before Present.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := &blockingSolver{waiting: cancel}
	b.tokens = map[string]string{}
	_, err := c.Obtain(ctx, acme.ObtainRequest{Identifiers: acme.DNSNames("c.example.com"), CertKey: newKey(t), Solvers: map[string]acme.Solver{acme.ChallengeHTTP01: b}})
	wantIs(t, err, context.Canceled)
	if _, cleanups, _ := b.counts(); cleanups != 1 {
		t.Fatalf("cleanups = %d, want 1", cleanups)
	}
	if b.cleanupCtxErr != nil {
		t.Fatalf("CleanUp got a dead context: %v", b.cleanupCtxErr)
	}
	if got := ca.Requests("challenge"); got != 0 {
		t.Fatalf("challenge accepted %d times although Wait failed", got)
	}
}

func TestObtainRejectsBadRequests(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	c := registered(t, ca)
	s := &presentFails{}
	accountKey := c.Key
	cases := []struct {
		name string
		req  acme.ObtainRequest
	}{
		{"no identifiers", acme.ObtainRequest{CertKey: newKey(t), Solvers: map[string]acme.Solver{"http-01": s}}},
		{"no solvers", acme.ObtainRequest{Identifiers: acme.DNSNames("a.example"), CertKey: newKey(t)}},
		{"no key", acme.ObtainRequest{Identifiers: acme.DNSNames("a.example"), Solvers: map[string]acme.Solver{"http-01": s}}},
		{"account key as certificate key", acme.ObtainRequest{Identifiers: acme.DNSNames("a.example"), CertKey: accountKey, Solvers: map[string]acme.Solver{"http-01": s}}},
	}
	before := ca.RequestCounts()["newOrder"]
	for _, tc := range cases {
		if _, err := c.Obtain(ctxT(t), tc.req); err == nil {
			t.Errorf("%s: Obtain succeeded, want an error", tc.name)
		}
	}
	if got := ca.RequestCounts()["newOrder"]; got != before {
		t.Fatalf("bad requests reached the CA: newOrder %d -> %d", before, got)
	}
}

func TestObtainNoMatchingSolver(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	c := registered(t, ca)
	// Wildcards are only offered dns-01; an http-01 solver cannot help.
	_, _, err := obtain(t, c, &presentFails{}, acme.DNSNames("*.example.com"), nil)
	wantIs(t, err, acme.ErrNoSolver)
}
