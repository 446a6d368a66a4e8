package acme_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// The label of dns-account-01, against the example of
// draft-ietf-acme-dns-account-label (section 3.2).
func TestDNSAccountLabel(t *testing.T) {
	t.Parallel()
	const acct = "https://example.com/acme/acct/ExampleAccount"
	if got, want := acme.DNSAccountLabel(acct), "ujmmovf2vn55tgye"; got != want {
		t.Errorf("DNSAccountLabel(%q) = %q, want %q", acct, got, want)
	}
	for _, tc := range []struct {
		name string
		ch   acme.Challenge
		want string
	}{
		{"name", acme.Challenge{AccountURI: acct, Identifier: acme.Identifier{Type: "dns", Value: "example.org"}}, "_ujmmovf2vn55tgye._acme-challenge.example.org"},
		{"wildcard", acme.Challenge{AccountURI: acct, Wildcard: true, Identifier: acme.Identifier{Type: "dns", Value: "*.example.org"}}, "_ujmmovf2vn55tgye._acme-challenge.example.org"},
		{"trailing dot", acme.Challenge{AccountURI: acct, Identifier: acme.Identifier{Type: "dns", Value: "example.org."}}, "_ujmmovf2vn55tgye._acme-challenge.example.org"},
	} {
		if got := tc.ch.DNSAccount01TXTRecordName(); got != tc.want {
			t.Errorf("%s: DNSAccount01TXTRecordName() = %q, want %q", tc.name, got, tc.want)
		}
	}
	// Another account, another label: the point of the type.
	if a, b := acme.DNSAccountLabel(acct), acme.DNSAccountLabel(acct+"2"); a == b {
		t.Errorf("two accounts share the label %q", a)
	}
	ch := acme.Challenge{Identifier: acme.Identifier{Type: "dns", Value: "*.example.com"}}
	if got, want := ch.DNSPersist01RecordName(), "_validation-persist.example.com"; got != want {
		t.Errorf("DNSPersist01RecordName() = %q, want %q", got, want)
	}
}

func TestCheckDNSPersist01(t *testing.T) {
	t.Parallel()
	good := acme.Challenge{Type: acme.ChallengeDNSPersist01, IssuerDomainNames: []string{"authority.example", "ca.example.net"}, AccountURI: "https://ca.example/acct/123"}
	if err := good.CheckDNSPersist01(); err != nil {
		t.Fatalf("CheckDNSPersist01(%+v) = %v, want nil", good, err)
	}
	eleven := make([]string, 11)
	for i := range eleven {
		eleven[i] = "ca" + strings.Repeat("x", i) + ".example"
	}
	for _, tc := range []struct {
		name string
		mod  func(*acme.Challenge)
	}{
		{"other type", func(c *acme.Challenge) { c.Type = acme.ChallengeDNS01 }},
		{"no issuers", func(c *acme.Challenge) { c.IssuerDomainNames = nil }},
		{"eleven issuers", func(c *acme.Challenge) { c.IssuerDomainNames = eleven }},
		{"upper case", func(c *acme.Challenge) { c.IssuerDomainNames = []string{"Authority.example"} }},
		{"trailing dot", func(c *acme.Challenge) { c.IssuerDomainNames = []string{"authority.example."} }},
		{"empty issuer", func(c *acme.Challenge) { c.IssuerDomainNames = []string{""} }},
		{"unicode issuer", func(c *acme.Challenge) { c.IssuerDomainNames = []string{"bücher.example"} }},
		{"issuer with a semicolon", func(c *acme.Challenge) { c.IssuerDomainNames = []string{"a;b.example"} }},
		{"too long issuer", func(c *acme.Challenge) { c.IssuerDomainNames = []string{strings.Repeat("a.", 127) + "aa"} }},
		{"no account", func(c *acme.Challenge) { c.AccountURI = "" }},
		{"account with a space", func(c *acme.Challenge) { c.AccountURI = "https://ca.example/acct 1" }},
		{"account with a semicolon", func(c *acme.Challenge) { c.AccountURI = "https://ca.example/acct;policy=wildcard" }},
	} {
		ch := good
		ch.IssuerDomainNames = slices.Clone(good.IssuerDomainNames)
		tc.mod(&ch)
		if err := ch.CheckDNSPersist01(); !errors.Is(err, acme.ErrMalformedChallenge) {
			t.Errorf("%s: CheckDNSPersist01 = %v, want an error matching ErrMalformedChallenge", tc.name, err)
		}
	}
}

// Pebble offers dns-account-01 and dns-persist-01 next to the RFC 8555
// types; the client decodes them, fills in the account URI, and keeps the
// issuer domain names.
func TestPebbleOffersDNSDraftChallenges(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	c := registered(t, ca)
	acct, err := c.GetAccount(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	order, err := c.NewOrder(ctxT(t), acme.OrderRequest{Identifiers: acme.DNSNames("drafts.example.com")})
	if err != nil {
		t.Fatal(err)
	}
	a, err := c.GetAuthorization(ctxT(t), order.Authorizations[0])
	if err != nil {
		t.Fatal(err)
	}
	byType := map[string]acme.Challenge{}
	for _, ch := range a.Challenges {
		byType[ch.Type] = ch
	}
	persist, ok := byType[acme.ChallengeDNSPersist01]
	if !ok {
		t.Fatalf("no %s challenge among %v", acme.ChallengeDNSPersist01, a.Challenges)
	}
	if persist.Token != "" {
		t.Errorf("dns-persist-01 token = %q, want none", persist.Token)
	}
	if !slices.Equal(persist.IssuerDomainNames, []string{"pebble.letsencrypt.org"}) {
		t.Errorf("issuer-domain-names = %v, want [pebble.letsencrypt.org]", persist.IssuerDomainNames)
	}
	if persist.AccountURI != acct.URL {
		t.Errorf("dns-persist-01 AccountURI = %q, want the account's URL %q", persist.AccountURI, acct.URL)
	}
	if err := persist.CheckDNSPersist01(); err != nil {
		t.Errorf("CheckDNSPersist01 = %v", err)
	}
	account, ok := byType[acme.ChallengeDNSAccount01]
	if !ok {
		t.Fatalf("no %s challenge among %v", acme.ChallengeDNSAccount01, a.Challenges)
	}
	if account.AccountURI != acct.URL || account.KeyAuthorization == "" {
		t.Errorf("dns-account-01 AccountURI = %q, key authorization %q; want %q and one", account.AccountURI, account.KeyAuthorization, acct.URL)
	}
	if _, err := c.DeactivateAuthorization(ctxT(t), a); err != nil {
		t.Fatal(err)
	}
}

// A CA that adds challenges of types nobody knows, malformed ones, and
// ones without a token (as Let's Encrypt's staging offering dns-persist-01
// did) does not stop issuance with the type that has a solver; a configured
// solver is never handed a challenge it cannot answer.
func TestToleratesUnknownChallenges(t *testing.T) {
	t.Parallel()
	var extra atomic.Value
	extra.Store([]any{})
	ca := rewriteCA(t, "/authZ/", func(_ *http.Request, obj map[string]any) {
		chals, _ := obj["challenges"].([]any)
		var kept []any
		for _, ch := range chals {
			m, _ := ch.(map[string]any)
			switch m["type"] {
			case acme.ChallengeDNSPersist01, acme.ChallengeDNSAccount01:
				continue // replaced by the hostile ones below
			}
			kept = append(kept, ch)
		}
		obj["challenges"] = append(kept, extra.Load().([]any)...)
	})
	hostile := []any{
		map[string]any{"type": "future-99", "url": "https://127.0.0.1/x", "status": "pending", "token": 42, "nonsense": map[string]any{"a": []any{1, 2}}},
		map[string]any{"type": "no-url-01", "status": "pending"},
		map[string]any{"type": 7, "url": "ftp://x"},
		map[string]any{"type": "tokenless-01", "url": "https://127.0.0.1/y", "status": "pending"},
		map[string]any{"type": acme.ChallengeDNSPersist01, "url": "https://127.0.0.1/z", "status": "pending"},
		map[string]any{"type": acme.ChallengeDNSAccount01, "url": "https://127.0.0.1/w", "status": "pending"},
	}
	extra.Store(hostile)
	s := newHTTPSolver(t, ca)
	c := registered(t, ca)

	// Solvers for the tokenless types too: they must never be called.
	never := &countingSolver{}
	solvers := map[string]acme.Solver{acme.ChallengeHTTP01: s, acme.ChallengeDNSPersist01: never, acme.ChallengeDNSAccount01: never, "tokenless-01": never}
	types := []string{acme.ChallengeDNSPersist01, acme.ChallengeDNSAccount01, "tokenless-01", acme.ChallengeHTTP01}
	if _, _, err := obtain(t, c, s, acme.DNSNames("tolerant.example.com"), func(r *acme.ObtainRequest) {
		r.Solvers, r.ChallengeTypes = solvers, types
	}); err != nil {
		t.Fatalf("Obtain with hostile extra challenges: %v", err)
	}
	if n := never.presents.Load(); n != 0 {
		t.Errorf("a solver was handed %d challenges it cannot answer", n)
	}

	// Only the malformed types have solvers: no challenge is accepted, and
	// the error says why each was passed over.
	ca.ResetCounts()
	_, _, err := obtain(t, c, s, acme.DNSNames("tolerant2.example.com"), func(r *acme.ObtainRequest) {
		r.Solvers = map[string]acme.Solver{acme.ChallengeDNSPersist01: never, acme.ChallengeDNSAccount01: never}
	})
	wantIs(t, err, acme.ErrNoSolver)
	wantIs(t, err, acme.ErrMalformedChallenge)
	if !strings.Contains(err.Error(), "issuer-domain-names") || !strings.Contains(err.Error(), "without a token") {
		t.Errorf("error %q does not say why the challenges were passed over", err)
	}
	if n := ca.Requests("challenge"); n != 0 {
		t.Errorf("%d challenge POSTs, want none", n)
	}

	// A malformed challenge of a type the client knows is an error.
	extra.Store([]any{map[string]any{"type": acme.ChallengeDNS01, "url": "ftp://127.0.0.1/", "status": "pending", "token": "abc"}})
	_, _, err = obtain(t, c, s, acme.DNSNames("tolerant3.example.com"), nil)
	if err == nil || !strings.Contains(err.Error(), "dns-01 challenge") {
		t.Errorf("Obtain with a malformed dns-01 challenge: got %v, want an error naming it", err)
	}
}

type countingSolver struct{ presents atomic.Int32 }

func (s *countingSolver) Present(context.Context, acme.Challenge) error {
	s.presents.Add(1)
	return errors.New("must not be called")
}
func (s *countingSolver) CleanUp(context.Context, acme.Challenge) error { return nil }
