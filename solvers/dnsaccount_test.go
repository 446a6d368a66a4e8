package solvers_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/solvers"
	"github.com/tlsmint/tlsmint/solvers/dns01test"
)

// TestDNSAccount01Concurrent: two accounts validate one name with
// dns-account-01 while a third validates it with plain dns-01, all at
// once, each through its own DNS01; every record is under its own name
// and all three validate.
func TestDNSAccount01Concurrent(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	d := ca.DNS()
	d.AddZone("example.com")
	const name = "shared.example.com"
	type run struct {
		typ    string
		client *acme.Client
		prov   *countingProvider
	}
	runs := []run{
		{typ: acme.ChallengeDNSAccount01, client: newClient(t, ca)},
		{typ: acme.ChallengeDNSAccount01, client: newClient(t, ca)},
		{typ: acme.ChallengeDNS01, client: newClient(t, ca)},
	}
	// Every run's solver blocks in Wait until all three records are
	// published, so the three validations overlap for certain.
	var published sync.WaitGroup
	published.Add(len(runs))
	all := make(chan struct{})
	go func() { published.Wait(); close(all) }()
	errs := make([]error, len(runs))
	var wg sync.WaitGroup
	for i := range runs {
		r := &runs[i]
		r.prov = &countingProvider{DNSProvider: &dns01test.Provider{Server: d}}
		s := &barrierSolver{DNS01: newDNS01(ca, r.prov), published: &published, all: all}
		wg.Go(func() {
			_, errs[i] = obtain(t, ca, r.client, r.typ, s, acme.DNSNames(name))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("run %d (%s): %v", i, runs[i].typ, err)
		}
	}
	var names []string
	for i, r := range runs {
		if len(r.prov.appends) != 1 || len(r.prov.deletes) != 1 {
			t.Fatalf("run %d: %d appends, %d deletes; want 1, 1", i, len(r.prov.appends), len(r.prov.deletes))
		}
		names = append(names, r.prov.appends[0].RR().Name)
	}
	label := func(c *acme.Client) string {
		return "_" + acme.DNSAccountLabel(accountURL(t, c)) + "._acme-challenge.shared"
	}
	want := []string{label(runs[0].client), label(runs[1].client), "_acme-challenge.shared"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("records written at %q, want %q", names, want)
	}
	for _, n := range want {
		if v := d.TXT(n + ".example.com"); v != nil {
			t.Errorf("TXT %s left behind: %q", n, v)
		}
	}
}

// barrierSolver is a DNS01 whose Wait first waits until every solver of
// the test has presented.
type barrierSolver struct {
	*solvers.DNS01
	published *sync.WaitGroup
	all       chan struct{}
	once      sync.Once
}

func (s *barrierSolver) Wait(ctx context.Context, chal acme.Challenge) error {
	s.once.Do(s.published.Done)
	select {
	case <-s.all:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.DNS01.Wait(ctx, chal)
}

// TestDNSAccount01CNAME: a CNAME at the account-labelled name is followed.
func TestDNSAccount01CNAME(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	d := ca.DNS()
	d.AddZone("example.com")
	d.AddZone("validation.test")
	c := newClient(t, ca)
	label := "_" + acme.DNSAccountLabel(accountURL(t, c)) + "._acme-challenge.cname.example.com"
	d.SetCNAME(label, "cname.account.validation.test")
	spy := &spyProvider{DNSProvider: &dns01test.Provider{Server: d}, dns: d}
	if _, err := obtain(t, ca, c, acme.ChallengeDNSAccount01, newDNS01(ca, spy), acme.DNSNames("cname.example.com")); err != nil {
		t.Fatalf("Obtain: %v", err)
	}
	if got := strings.Join(spy.zones, " "); got != "validation.test." {
		t.Errorf("zones appended to: %q, want the CNAME target's", got)
	}
}

func TestDNSAccount01PresentRefuses(t *testing.T) {
	dnsSrv := testsetup.DNS(t, "example.com")
	spy := &spyProvider{DNSProvider: &dns01test.Provider{Server: dnsSrv}, dns: dnsSrv}
	s := &solvers.DNS01{Provider: spy, Resolvers: []string{dnsSrv.Addr()}}
	chal := acme.Challenge{Type: acme.ChallengeDNSAccount01, URL: "u", Token: testToken, Identifier: dnsID("example.com"), KeyAuthorization: testKeyAut}
	if err := s.Present(t.Context(), chal); err == nil || !strings.Contains(err.Error(), "account URI") {
		t.Errorf("Present without an account URI: got %v, want an error naming it", err)
	}
	chal.Type = acme.ChallengeHTTP01
	if err := s.Present(t.Context(), chal); err == nil {
		t.Error("Present of an http-01 challenge: got nil, want an error")
	}
	chal.Type, chal.AccountURI, chal.Token = acme.ChallengeDNSAccount01, "https://ca.test/acct/1", "../x"
	if err := s.Present(t.Context(), chal); !errors.Is(err, solvers.ErrInvalidToken) {
		t.Errorf("Present with a bad token: got %v, want ErrInvalidToken", err)
	}
	if len(spy.zones) != 0 {
		t.Errorf("records appended in %q, want none", spy.zones)
	}
}
