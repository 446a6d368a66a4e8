package relay_test

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/relay"
)

// TestDefaultAccountRateLimit: with no limit in the policy, an account
// may place DefaultAccountOrders new orders, and the next is refused
// with rateLimited and a Retry-After within the period; another account
// of the tenant still may order.
func TestDefaultAccountRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.registered(t)
	for i := range relay.DefaultAccountOrders {
		if _, err := c.NewOrder(ctxT(t), acme.OrderRequest{Identifiers: acme.DNSNames("many.example.com")}); err != nil {
			t.Fatalf("order %d: %v", i, err)
		}
	}
	_, err := c.NewOrder(ctxT(t), acme.OrderRequest{Identifiers: acme.DNSNames("many.example.com")})
	wantProblem(t, err, "rateLimited", http.StatusTooManyRequests)
	p := problemOf(t, err)
	if !strings.Contains(p.Detail, "this account may have 300 orders per 3h") || p.RetryAfter <= 0 || p.RetryAfter > relay.DefaultAccountOrdersPeriod+relay.DefaultAccountOrdersPeriod/60 {
		t.Fatalf("got %q, Retry-After %v; want the account's default limit and a Retry-After within 3h", p.Detail, p.RetryAfter)
	}
	if _, err := e.registered(t).NewOrder(ctxT(t), acme.OrderRequest{Identifiers: acme.DNSNames("many.example.com")}); err != nil {
		t.Fatalf("another account's order: %v", err)
	}
	if n := len(e.records(t, "newOrder")); n > relay.DefaultAccountOrders+2 {
		t.Fatalf("%d newOrder records, want at most %d", n, relay.DefaultAccountOrders+2)
	}
}

// TestAccountAndTenantRateLimits: an account's limit refuses it while
// the tenant's still has room; the tenant's refuses every account; -1
// lifts a limit.
func TestAccountAndTenantRateLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	pol := examplePolicy()
	pol.AccountRateLimit = relay.RateLimit{Orders: 2, Period: time.Hour}
	pol.RateLimit = relay.RateLimit{Orders: 3, Period: time.Hour}
	eab := e.tenant(t, "limited", pol)
	order := func(c *acme.Client) error {
		_, err := c.NewOrder(ctxT(t), acme.OrderRequest{Identifiers: acme.DNSNames("rl.example.com")})
		return err
	}
	a, b := e.client(t), e.client(t)
	for _, c := range []*acme.Client{a, b} {
		if _, err := c.Register(ctxT(t), acme.Account{ExternalAccountBinding: eab}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		if err := order(a); err != nil {
			t.Fatalf("a's order %d: %v", i, err)
		}
	}
	err := order(a)
	wantProblem(t, err, "rateLimited", http.StatusTooManyRequests)
	if p := problemOf(t, err); !strings.Contains(p.Detail, "this account may have 2 orders per 1h") {
		t.Fatalf("got %q, want the account's limit", p.Detail)
	}
	if err := order(b); err != nil {
		t.Fatalf("b's first order: %v", err)
	}
	err = order(b)
	wantProblem(t, err, "rateLimited", http.StatusTooManyRequests)
	if p := problemOf(t, err); !strings.Contains(p.Detail, "tenant may have 3 orders per 1h") {
		t.Fatalf("got %q, want the tenant's limit", p.Detail)
	}
	pol.RateLimit = relay.RateLimit{Orders: -1}
	pol.AccountRateLimit = relay.RateLimit{Orders: -1}
	if err := e.srv.PutTenant(ctxT(t), relay.Tenant{ID: "limited", Policy: pol}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := order(a); err != nil {
			t.Fatalf("without limits, order %d: %v", i, err)
		}
	}
	for _, bad := range []relay.RateLimit{{Orders: -2}, {Orders: 5}, {Period: time.Hour}, {Orders: 1, Period: -time.Hour}} {
		pol.FailedValidationLimit = bad
		if err := e.srv.PutTenant(ctxT(t), relay.Tenant{ID: "bad", Policy: pol}); err == nil {
			t.Errorf("limit %+v accepted", bad)
		}
	}
}

// TestFailedValidationLimit: past an account's failed validations, its
// next challenge is refused with rateLimited and nothing is dialled; the
// default applies with no limit in the policy.
func TestFailedValidationLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		limit relay.RateLimit
		n     int
	}{
		{"set", relay.RateLimit{Orders: 2, Period: time.Hour}, 2},
		{"default", relay.RateLimit{}, relay.DefaultAccountFailedValidations},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{})
			ln := serveCounting(t, http.NotFoundHandler()) // no key authorization anywhere
			e.srv.Validator.HTTPPort = ln.Addr().(*net.TCPAddr).Port
			pol := examplePolicy()
			pol.FailedValidationLimit = tc.limit
			c := e.client(t)
			if _, err := c.Register(ctxT(t), acme.Account{ExternalAccountBinding: e.tenant(t, "failing", pol)}); err != nil {
				t.Fatal(err)
			}
			challenge := func() error {
				t.Helper()
				o, err := c.NewOrder(ctxT(t), acme.OrderRequest{Identifiers: acme.DNSNames("fail.example.com")})
				if err != nil {
					t.Fatal(err)
				}
				az, err := c.GetAuthorization(ctxT(t), o.Authorizations[0])
				if err != nil {
					t.Fatal(err)
				}
				for _, ch := range az.Challenges {
					if ch.Type == acme.ChallengeHTTP01 {
						_, err := c.AcceptChallenge(ctxT(t), ch)
						return err
					}
				}
				t.Fatal("no http-01 challenge")
				return nil
			}
			for i := range tc.n {
				if err := challenge(); err != nil {
					t.Fatalf("challenge %d: %v", i, err)
				}
			}
			dialled := ln.accepted.Load()
			if dialled != int64(tc.n) {
				t.Fatalf("%d connections for %d validations", dialled, tc.n)
			}
			err := challenge()
			wantProblem(t, err, "rateLimited", http.StatusTooManyRequests)
			if p := problemOf(t, err); !strings.Contains(p.Detail, "failed validations per 1h") || p.RetryAfter <= 0 {
				t.Fatalf("got %q (Retry-After %v), want the failed-validation limit", p.Detail, p.RetryAfter)
			}
			if n := ln.accepted.Load(); n != dialled {
				t.Fatalf("the refused challenge made %d connections", n-dialled)
			}
		})
	}
}

// TestLogsAtInfo: at the Info level the relay logs each issuance and
// each refused order, one line each, and a request without a valid
// account not at all.
func TestLogsAtInfo(t *testing.T) {
	t.Parallel()
	var buf testsetup.Buffer
	e := newEnv(t, envOptions{modify: func(s *relay.Server) {
		s.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}})
	c := e.registered(t)
	if _, err := e.obtain(t, c, acme.DNSNames("logged.example.com"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.NewOrder(ctxT(t), acme.OrderRequest{Identifiers: acme.DNSNames("www.not-allowed.example")}); err == nil {
		t.Fatal("an order outside the policy was accepted")
	}
	e.post(t, e.ts.URL+"/new-order", "application/jose+json", []byte("not a JWS"))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var issued, refused int
	for _, l := range lines {
		switch {
		case strings.Contains(l, "relay: certificate issued"):
			issued++
			if !strings.Contains(l, "logged.example.com") || !strings.Contains(l, "tenant=team") || !strings.Contains(l, "serial=") {
				t.Errorf("issuance line lacks names, tenant or serial: %s", l)
			}
		case strings.Contains(l, "relay: order refused"):
			refused++
			if !strings.Contains(l, "www.not-allowed.example") || !strings.Contains(l, "rejectedIdentifier") {
				t.Errorf("refusal line lacks the name or the problem: %s", l)
			}
		}
	}
	if issued != 1 || refused != 1 {
		t.Fatalf("%d issuance and %d refusal lines, want 1 and 1:\n%s", issued, refused, buf.String())
	}
}

// TestTenantRateLimitAcrossReplicas: a tenant's order limit counts the
// orders placed at every replica on the storage (each keeps its own
// record, summed): two through one, one through the other, and the
// fourth refused at either.
func TestTenantRateLimitAcrossReplicas(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noServe: true, modify: func(s *relay.Server) { s.BaseURL = "https://example.com" }})
	second := &relay.Server{Storage: e.store, BaseURL: "https://example.com", Upstreams: e.srv.Upstreams, Validator: e.srv.Validator}
	t.Cleanup(func() { second.Close() })
	lb := &balancer{replicas: []*httptest.Server{newTLSServer(t, e.srv), newTLSServer(t, second)}}
	pol := examplePolicy()
	pol.RateLimit = relay.RateLimit{Orders: 3, Period: time.Hour}
	eab := e.tenant(t, "shared", pol)
	ctx := ctxT(t)
	var clients []*acme.Client
	for range 2 {
		c := &acme.Client{DirectoryURL: "https://example.com/directory", Key: newKey(t), HTTPClient: lb.client(), PollInterval: 10 * time.Millisecond}
		if _, err := c.Register(ctx, acme.Account{ExternalAccountBinding: eab}); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	order := func(replica int, c *acme.Client) error {
		lb.target.Store(int32(replica))
		_, err := c.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("shared.example.com")})
		return err
	}
	for i, step := range []struct{ replica, client int }{{0, 0}, {0, 1}, {1, 0}} {
		if err := order(step.replica, clients[step.client]); err != nil {
			t.Fatalf("order %d: %v", i, err)
		}
	}
	for replica := range 2 {
		err := order(replica, clients[1])
		wantProblem(t, err, "rateLimited", http.StatusTooManyRequests)
		if p := problemOf(t, err); !strings.Contains(p.Detail, "tenant may have 3 orders per 1h") || p.RetryAfter <= 0 {
			t.Fatalf("replica %d: %q, Retry-After %v; want the tenant's limit", replica, p.Detail, p.RetryAfter)
		}
	}
}
