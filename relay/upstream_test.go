package relay_test

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/relay"
	"github.com/tlsmint/tlsmint/solvers"
	"github.com/tlsmint/tlsmint/storage"
)

// secondUpstream starts another Pebble and returns it with an Upstream for it.
func secondUpstream(t *testing.T, name string) (*testpebble.CA, *relay.Upstream) {
	t.Helper()
	ca := testsetup.CA(t, testpebble.Options{})
	up := &solvers.HTTP01{}
	testsetup.ServeHTTP(t, "127.0.0.1:"+strconv.Itoa(ca.HTTPPort()), up)
	return ca, &relay.Upstream{
		Name:    name,
		Client:  &acme.Client{DirectoryURL: ca.DirectoryURL(), Key: newKey(t), HTTPClient: ca.HTTPClient(), PollInterval: 10 * time.Millisecond},
		Account: acme.Account{TermsOfServiceAgreed: true},
		Solvers: map[string]acme.Solver{acme.ChallengeHTTP01: up},
	}
}

// TestUpstreamFallback: the first upstream down (connections refused) or
// rate limited, the second issues.
func TestUpstreamFallback(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"down", "rate limited"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ca2, up2 := secondUpstream(t, "second")
			e := newEnv(t, envOptions{modify: func(s *relay.Server) { s.Upstreams = append(s.Upstreams, up2) }})
			switch mode {
			case "down":
				if err := e.ca.SetDown(testpebble.Refuse); err != nil {
					t.Fatal(err)
				}
			case "rate limited":
				if err := e.ca.RateLimit("newOrder", time.Hour, -1); err != nil {
					t.Fatal(err)
				}
			}
			c := e.registered(t)
			cert, err := e.obtain(t, c, acme.DNSNames("fallback.example.com"), nil)
			if err != nil {
				t.Fatalf("Obtain: %v", err)
			}
			if _, err := cert.Leaf().Verify(verifyOpts(ca2, cert.Chain, "fallback.example.com")); err != nil {
				t.Fatalf("the certificate is not the second upstream's: %v", err)
			}
			if err := e.log.Flush(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			fails := e.records(t, "upstream")
			if len(fails) != 1 || fails[0].Issuer != "pebble" || fails[0].Outcome != record.OutcomeFailure {
				t.Fatalf("upstream failure records = %+v, want one for the first upstream", fails)
			}
			if mode == "rate limited" && fails[0].Problem != acme.ErrRateLimited.Type {
				t.Fatalf("recorded problem %q, want rateLimited", fails[0].Problem)
			}
			// Revocation and ARI go to the upstream that issued it.
			if err := c.RevokeCertificate(ctxT(t), cert.Leaf().Raw, nil, 0); err != nil {
				t.Fatalf("revoke: %v", err)
			}
			if err := ca2.Revoke(cert.Leaf(), 0); err == nil {
				t.Fatal("not revoked at the second upstream")
			}
		})
	}
}

// TestUpstreamRefusal: when every upstream refuses, the downstream order
// is invalid with the upstream's problem type.
func TestUpstreamRefusal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{pebble: testpebble.Options{BlockedDomains: []string{"blocked.example.com"}}})
	c := e.registered(t)
	_, err := e.obtain(t, c, acme.DNSNames("www.blocked.example.com"), nil)
	if !errors.Is(err, acme.ErrOrderInvalid) || !errors.Is(err, acme.ErrRejectedIdentifier) {
		t.Fatalf("Obtain of a name the upstream refuses: %v, want an invalid order with rejectedIdentifier", err)
	}
	if err := e.ca.RateLimit("newOrder", 30*time.Second, -1); err != nil {
		t.Fatal(err)
	}
	_, err = e.obtain(t, c, acme.DNSNames("limited.example.com"), nil)
	if !errors.Is(err, acme.ErrRateLimited) {
		t.Fatalf("Obtain while the upstream is rate limited: %v, want rateLimited", err)
	}
	// The upstream's Retry-After is remembered: the next order is refused
	// by the relay with a Retry-After, and nothing more reaches Pebble.
	before := e.ca.Requests("newOrder")
	_, err = c.NewOrder(ctxT(t), acme.OrderRequest{Identifiers: acme.DNSNames("limited.example.com")})
	wantProblem(t, err, "rateLimited", 429)
	if ra := problemOf(t, err).RetryAfter; ra < 20*time.Second || ra > 31*time.Second {
		t.Fatalf("downstream Retry-After %v, want the upstream's 30s (less the time passed)", ra)
	}
	if n := e.ca.Requests("newOrder"); n != before {
		t.Fatalf("Pebble saw %d more orders while rate limited, want none", n-before)
	}
}

// TestRestart: a relay on file storage is replaced by a new one mid-order;
// the client carries on (its old nonces are refused and retried).
func TestRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e, h := newSwapEnv(t, envOptions{store: storage.Dir(dir)})
	c := e.registered(t)
	ctx := ctxT(t)
	o, err := c.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("restart.example.com")})
	if err != nil {
		t.Fatal(err)
	}
	authorize(t, e, c, o)
	e.srv.Close()
	// A new relay, a new upstream client, the same storage and key.
	next := &relay.Server{
		Storage:    storage.Dir(dir),
		Upstreams:  []*relay.Upstream{{Name: "pebble", Client: &acme.Client{DirectoryURL: e.ca.DirectoryURL(), Key: e.upstream.Client.Key, HTTPClient: e.ca.HTTPClient(), PollInterval: 10 * time.Millisecond}, Account: acme.Account{TermsOfServiceAgreed: true}, Solvers: e.upstream.Solvers}},
		Validator:  e.srv.Validator,
		AdminToken: adminToken,
	}
	t.Cleanup(func() { next.Close() })
	h.set(next)
	csr, _ := acme.CSR(newKey(t), acme.DNSNames("restart.example.com"))
	final, err := c.FinalizeOrder(ctx, o, csr)
	if err != nil {
		t.Fatalf("finalize after the restart: %v", err)
	}
	chains, err := c.FetchCertificate(ctx, final.Certificate)
	if err != nil || len(chains) == 0 {
		t.Fatalf("download after the restart: %v", err)
	}
	if _, err := c.GetAccount(ctx); err != nil {
		t.Fatalf("the account after the restart: %v", err)
	}
}

// TestUpstreamDown: with the only upstream refusing connections, a
// revocation is answered 503 with a Retry-After, and an order finalized
// then becomes invalid; neither problem shows the Go error (the
// upstream's address, the dial error), which goes to the relay's log.
func TestUpstreamDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.registered(t)
	cert, err := e.obtain(t, c, acme.DNSNames("down.example.com"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ca.SetDown(testpebble.Refuse); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.ca.SetDown(testpebble.Up) })
	leaks := func(t *testing.T, detail string) {
		t.Helper()
		u, _ := url.Parse(e.ca.DirectoryURL())
		for _, s := range []string{u.Host, "dial", "connect:", "refused", "acme:"} {
			if strings.Contains(detail, s) {
				t.Errorf("detail %q shows %q", detail, s)
			}
		}
		if !strings.Contains(detail, "pebble") {
			t.Errorf("detail %q does not name the upstream", detail)
		}
	}
	err = c.RevokeCertificate(ctxT(t), cert.Leaf().Raw, nil, 0)
	wantProblem(t, err, "serverInternal", 503)
	if p := problemOf(t, err); p.RetryAfter <= 0 {
		t.Errorf("revocation with the upstream down: no Retry-After")
	} else {
		leaks(t, p.Detail)
	}
	_, err = e.obtain(t, c, acme.DNSNames("down2.example.com"), nil)
	if !errors.Is(err, acme.ErrOrderInvalid) {
		t.Fatalf("obtain with the upstream down: %v, want an invalid order", err)
	}
	p := problemOf(t, err)
	wantProblem(t, err, "serverInternal", 503)
	leaks(t, p.Detail)
}
