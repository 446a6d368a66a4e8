package relay_test

import (
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/relay"
	"github.com/tlsmint/tlsmint/storage"
)

// TestRoutes: IP addresses go to the "short" upstream with the
// shortlived profile, special.example.com to a route whose first upstream
// is down (the next one of the route issues), rate.example.com to a
// rate-limited CA only (its back-off refuses the next order for that name
// at newOrder, while other names still go through), and everything else,
// including an order that mixes an address and a name (no route matches
// all of it), to Upstreams in order.
func TestRoutes(t *testing.T) {
	t.Parallel()
	ca2, other := secondUpstream(t, "other")
	e := newEnv(t, envOptions{
		pebble: testpebble.Options{Profiles: map[string]time.Duration{"classic": 0, "shortlived": 6 * 24 * time.Hour}},
		modify: func(s *relay.Server) {
			short := &relay.Upstream{
				Name:    "short",
				Client:  &acme.Client{DirectoryURL: s.Upstreams[0].Client.DirectoryURL, Key: newKey(t), HTTPClient: s.Upstreams[0].Client.HTTPClient, PollInterval: 10 * time.Millisecond},
				Account: acme.Account{TermsOfServiceAgreed: true},
				Solvers: s.Upstreams[0].Solvers,
			}
			down := &relay.Upstream{
				Name:    "down",
				Client:  &acme.Client{DirectoryURL: "https://127.0.0.1:" + strconv.Itoa(closedPort(t)) + "/dir", Key: newKey(t)},
				Account: acme.Account{TermsOfServiceAgreed: true},
			}
			s.Upstreams = append(s.Upstreams, short, other, down)
			s.Routes = []relay.Route{
				{IPRanges: ipRanges("127.0.0.0/8", "::1/128"), Upstreams: []string{"short"}, Profile: "shortlived"},
				{Names: []string{"special.example.com"}, Upstreams: []string{"down", "short"}},
				{Names: []string{"rate.example.com"}, Upstreams: []string{"other"}},
			}
		},
	})
	c := e.registered(t)
	issuer := func(name string) string {
		t.Helper()
		for _, r := range e.records(t, "issue") {
			if r.Outcome == "ok" && slices.Contains(r.Names, name) {
				return r.Issuer
			}
		}
		return ""
	}

	cert, err := e.obtain(t, c, acme.IPAddresses(netip.MustParseAddr("127.0.0.1")), nil)
	if err != nil {
		t.Fatalf("Obtain an address: %v", err)
	}
	if got := issuer("127.0.0.1"); got != "short" {
		t.Errorf("the address was issued by %q, want the route's short", got)
	}
	if life := cert.Leaf().NotAfter.Sub(cert.Leaf().NotBefore); life > 7*24*time.Hour {
		t.Errorf("the address's certificate lasts %v, want the route's shortlived profile (6 days)", life)
	}

	if _, err := e.obtain(t, c, acme.DNSNames("www.special.example.com"), nil); err != nil {
		t.Fatalf("Obtain through a route whose first upstream is down: %v", err)
	}
	if got := issuer("www.special.example.com"); got != "short" {
		t.Errorf("www.special.example.com was issued by %q, want short (the route's second, after down)", got)
	}
	if !slices.ContainsFunc(e.records(t, "upstream"), func(r record.Audit) bool { return r.Issuer == "down" }) {
		t.Error("no failure record of the down upstream")
	}

	for _, ids := range [][]acme.Identifier{
		acme.DNSNames("www.example.com"),
		append(acme.DNSNames("mixed.example.com"), acme.IPAddresses(netip.MustParseAddr("127.0.0.1"))...),
	} {
		if _, err := e.obtain(t, c, ids, nil); err != nil {
			t.Fatalf("Obtain %v: %v", ids, err)
		}
		if got := issuer(ids[0].Value); got != "pebble" {
			t.Errorf("%v was issued by %q, want the first of Upstreams (pebble)", ids, got)
		}
	}

	// The route of rate.example.com has only a CA that is rate limited:
	// the order fails with its rateLimited, then the next one for that
	// name is refused at newOrder, before anything reaches a CA.
	if err := ca2.RateLimit("newOrder", time.Hour, -1); err != nil {
		t.Fatal(err)
	}
	_, err = e.obtain(t, c, acme.DNSNames("rate.example.com"), nil)
	wantProblem(t, err, "rateLimited", 0)
	before := ca2.Requests("newOrder")
	if before == 0 {
		t.Fatal("the first order for rate.example.com did not reach its route's CA")
	}
	_, err = e.obtain(t, c, acme.DNSNames("a.rate.example.com"), nil)
	wantProblem(t, err, "rateLimited", 429)
	if p := problemOf(t, err); p.RetryAfter <= 0 {
		t.Errorf("refused with no Retry-After: %+v", p)
	}
	if got := ca2.Requests("newOrder"); got != before {
		t.Errorf("the refused order reached the CA (%d newOrder, was %d)", got, before)
	}
	if _, err := e.obtain(t, c, acme.DNSNames("after.example.com"), nil); err != nil {
		t.Fatalf("another name while the route's CA is rate limited: %v", err)
	}
}

// A route naming an upstream that does not exist, or none, makes the
// Server refuse to serve (and its Go API return the error).
func TestRoutesMisconfigured(t *testing.T) {
	t.Parallel()
	up := &relay.Upstream{Name: "a", Client: &acme.Client{DirectoryURL: "https://ca.example/dir"}}
	if err := (&relay.Server{Storage: storage.NewMemory(), Upstreams: []*relay.Upstream{up}, Routes: []relay.Route{{Upstreams: []string{"a"}}}}).Validate(); err != nil {
		t.Errorf("a valid route: Validate = %v", err)
	}
	for _, routes := range [][]relay.Route{
		{{Names: []string{"example.com"}, Upstreams: []string{"b"}}},
		{{Names: []string{"example.com"}}},
		{{Names: []string{"bad..name"}, Upstreams: []string{"a"}}},
	} {
		s := &relay.Server{Storage: storage.NewMemory(), Upstreams: []*relay.Upstream{up}, Routes: routes}
		if err := s.Validate(); err == nil {
			t.Errorf("routes %+v: Validate found nothing wrong", routes)
		}
		if err := s.PutTenant(ctxT(t), relay.Tenant{ID: "x"}); err == nil {
			t.Errorf("routes %+v: PutTenant worked, want the configuration error", routes)
		}
		s.Close()
	}
}
