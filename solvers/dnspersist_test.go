package solvers_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libdns/libdns"
	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/solvers"
	"github.com/tlsmint/tlsmint/solvers/dns01test"
)

// pebbleIssuer is the issuer domain name the test CA offers.
const pebbleIssuer = "pebble.letsencrypt.org"

// countingProvider counts the records a provider is asked to write and
// delete.
type countingProvider struct {
	solvers.DNSProvider
	mu      sync.Mutex
	appends []libdns.Record
	deletes []libdns.Record
}

func (p *countingProvider) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	p.mu.Lock()
	p.appends = append(p.appends, recs...)
	p.mu.Unlock()
	return p.DNSProvider.AppendRecords(ctx, zone, recs)
}

func (p *countingProvider) DeleteRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	p.mu.Lock()
	p.deletes = append(p.deletes, recs...)
	p.mu.Unlock()
	return p.DNSProvider.DeleteRecords(ctx, zone, recs)
}

func (p *countingProvider) counts() (appends, deletes int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.appends), len(p.deletes)
}

// newPersist returns a dns-persist-01 solver over the CA's mock DNS;
// provider nil makes it read-only.
func newPersist(ca *testpebble.CA, p solvers.DNSProvider) *solvers.DNSPersist01 {
	_, port, _ := net.SplitHostPort(ca.DNS().Addr())
	n, _ := strconv.Atoi(port)
	s := &solvers.DNSPersist01{
		Resolvers:          []string{ca.DNS().Addr()},
		NameserverPort:     n,
		PropagationTimeout: 30 * time.Second,
		PollInterval:       20 * time.Millisecond,
	}
	if p != nil {
		s.Provider = p
	}
	return s
}

// accountURL returns the URL of c's account.
func accountURL(t *testing.T, c *acme.Client) string {
	t.Helper()
	a, err := c.GetAccount(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	return a.URL
}

// TestDNSPersist01Provider: the record is created once; a second issuance
// and a renewal (with replaces) validate for real with no DNS write, and
// nothing is ever deleted.
func TestDNSPersist01Provider(t *testing.T) {
	t.Parallel()
	ca, d, c, acct := persistEnv(t)
	prov := &countingProvider{DNSProvider: &dns01test.Provider{Server: d}}
	s := newPersist(ca, prov)
	const name = "_validation-persist.persist.example.com"
	want := pebbleIssuer + "; accounturi=" + acct

	first, err := obtain(t, ca, c, acme.ChallengeDNSPersist01, s, acme.DNSNames("persist.example.com"))
	if err != nil {
		t.Fatalf("first Obtain: %v", err)
	}
	if got := d.TXT(name); len(got) != 1 || got[0] != want {
		t.Fatalf("TXT %s = %q, want exactly [%q]", name, got, want)
	}
	if a, del := prov.counts(); a != 1 || del != 0 {
		t.Fatalf("after the first issuance: %d appends, %d deletes; want 1, 0", a, del)
	}
	if ttl := prov.appends[0].RR().TTL; ttl != solvers.DefaultPersistTTL {
		t.Errorf("record TTL %v, want %v", ttl, solvers.DefaultPersistTTL)
	}

	ca.ResetCounts()
	if _, err := obtain(t, ca, c, acme.ChallengeDNSPersist01, s, acme.DNSNames("persist.example.com")); err != nil {
		t.Fatalf("second Obtain: %v", err)
	}
	id, err := acme.CertificateID(first.Leaf())
	if err != nil {
		t.Fatal(err)
	}
	renewed, err := c.Obtain(testContext(t), acme.ObtainRequest{
		Identifiers: acme.DNSNames("persist.example.com"), CertKey: newKey(t), Replaces: id,
		Solvers: map[string]acme.Solver{acme.ChallengeDNSPersist01: s}, ChallengeTypes: []string{acme.ChallengeDNSPersist01},
	})
	if err != nil {
		t.Fatalf("renewal: %v", err)
	}
	if renewed.Leaf().SerialNumber.Cmp(first.Leaf().SerialNumber) == 0 {
		t.Fatal("the renewal returned the first certificate")
	}
	if a, del := prov.counts(); a != 1 || del != 0 {
		t.Errorf("after a second issuance and a renewal: %d appends, %d deletes in all; want still 1, 0", a, del)
	}
	// Both were validated by the CA, through dns-persist-01.
	if n := ca.Requests("challenge"); n != 2 {
		t.Errorf("%d challenge POSTs for the second issuance and the renewal, want 2", n)
	}
	if got := d.TXT(name); len(got) != 1 || got[0] != want {
		t.Errorf("TXT %s after all = %q, want [%q] kept", name, got, want)
	}
}

// persistEnv starts a CA whose DNS server serves the zone example.com
// and registers a client with it; it returns them with the client's
// account URL.
func persistEnv(t *testing.T) (*testpebble.CA, *testpebble.DNSServer, *acme.Client, string) {
	t.Helper()
	ca := newCA(t, testpebble.Options{})
	d := ca.DNS()
	d.AddZone("example.com")
	c := newClient(t, ca)
	return ca, d, c, accountURL(t, c)
}

// TestDNSPersist01ReadOnly: without a provider, a missing record fails
// before the challenge is accepted, with the exact record to create; once
// it is created, issuance succeeds.
func TestDNSPersist01ReadOnly(t *testing.T) {
	t.Parallel()
	ca, d, c, acct := persistEnv(t)
	s := newPersist(ca, nil)

	_, err := obtain(t, ca, c, acme.ChallengeDNSPersist01, s, acme.DNSNames("ro.example.com"))
	var pe *solvers.PersistRecordError
	if !errors.As(err, &pe) || !errors.Is(err, solvers.ErrPersistRecordMissing) {
		t.Fatalf("Obtain without the record: got %v, want a *PersistRecordError", err)
	}
	wantValue := pebbleIssuer + "; accounturi=" + acct
	if pe.Name != "_validation-persist.ro.example.com" || pe.Record.String() != wantValue {
		t.Errorf("instruction: create %s = %q; want _validation-persist.ro.example.com = %q", pe.Name, pe.Record.String(), wantValue)
	}
	wantLine := `_validation-persist.ro.example.com. IN TXT "` + wantValue + `"`
	if !strings.Contains(err.Error(), wantLine) {
		t.Errorf("error %q does not contain the zone file line %s", err, wantLine)
	}
	if errors.Is(err, solvers.ErrPersistUntilPassed) {
		t.Errorf("error %v matches ErrPersistUntilPassed, but no record had ended", err)
	}
	if n := ca.Requests("challenge"); n != 0 {
		t.Errorf("%d challenge POSTs, want none", n)
	}

	// The operator creates exactly what was asked for.
	d.AddTXT(pe.Name, pe.Record.String())
	ca.ResetCounts()
	if _, err := obtain(t, ca, c, acme.ChallengeDNSPersist01, s, acme.DNSNames("ro.example.com")); err != nil {
		t.Fatalf("Obtain with the record: %v", err)
	}
	if n := ca.Requests("challenge"); n != 1 {
		t.Errorf("%d challenge POSTs, want 1", n)
	}
	got, err := s.Check(testContext(t), "ro.example.com", s.RecordFor(pebbleIssuer, acct, false))
	if err != nil || got.String() != wantValue {
		t.Errorf("Check = %v, %v; want the record %q", got, err, wantValue)
	}
}

// TestDNSPersist01Refusals: what the read-only check refuses, before any
// challenge is accepted, and what it says.
func TestDNSPersist01Refusals(t *testing.T) {
	t.Parallel()
	ca, d, c, acct := persistEnv(t)
	past := time.Now().Add(-time.Hour).Unix()
	tests := []struct {
		name    string
		records []string
		mod     func(*solvers.DNSPersist01)
		wantIs  error
		wantMsg []string
	}{
		{"another account", []string{pebbleIssuer + "; accounturi=https://127.0.0.1/my-account/someone-else"}, nil,
			solvers.ErrPersistRecordMissing, []string{`names the account "https://127.0.0.1/my-account/someone-else", not this one`, acct}},
		{"another CA", []string{"other-ca.example; accounturi=" + acct}, nil,
			solvers.ErrPersistRecordMissing, []string{"no record names this CA (1 for others)"}},
		{"record malformed", []string{pebbleIssuer + "; accounturi=" + acct + "; accounturi=" + acct}, nil,
			solvers.ErrPersistRecordMissing, []string{"does not parse", "duplicate parameter"}},
		{"persistUntil passed", []string{pebbleIssuer + "; accounturi=" + acct + "; persistUntil=" + strconv.FormatInt(past, 10)}, nil,
			solvers.ErrPersistUntilPassed, []string{"persistUntil", "has passed"}},
		{"configured issuer not offered", nil, func(s *solvers.DNSPersist01) { s.IssuerDomainName = "other-ca.example" },
			solvers.ErrIssuerNotOffered, []string{`"other-ca.example"`, pebbleIssuer}},
		{"configured persistUntil passed", nil, func(s *solvers.DNSPersist01) { s.PersistUntil = time.Now().Add(-time.Minute) },
			solvers.ErrPersistUntilPassed, []string{"set a later one"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := "refuse" + strconv.Itoa(i) + ".example.com"
			for _, r := range tt.records {
				d.AddTXT("_validation-persist."+host, r)
			}
			s := newPersist(ca, nil)
			if tt.mod != nil {
				tt.mod(s)
			}
			before := ca.Requests("challenge")
			_, err := obtain(t, ca, c, acme.ChallengeDNSPersist01, s, acme.DNSNames(host))
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("Obtain: got %v, want an error matching %v", err, tt.wantIs)
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not say %q", err, m)
				}
			}
			if n := ca.Requests("challenge") - before; n != 0 {
				t.Errorf("%d challenge POSTs, want none", n)
			}
		})
	}
}

// TestDNSPersist01CAVerdict: what the test CA itself decides about records
// in the format PersistRecord prints, without the solver's own check: the
// right record validates, and each wrong one fails with the CA's reason.
func TestDNSPersist01CAVerdict(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	c := newClient(t, ca)
	acct := accountURL(t, c)
	past := time.Now().Add(-time.Hour)
	tests := []struct {
		name     string
		wildcard bool
		rec      solvers.PersistRecord
		wantErr  string // "" for valid
	}{
		{"right", false, solvers.PersistRecord{IssuerDomainName: pebbleIssuer, AccountURI: acct}, ""},
		{"right with a future persistUntil", false, solvers.PersistRecord{IssuerDomainName: pebbleIssuer, AccountURI: acct, PersistUntil: time.Now().Add(time.Hour)}, ""},
		{"wildcard with policy", true, solvers.PersistRecord{IssuerDomainName: pebbleIssuer, AccountURI: acct, Wildcard: true}, ""},
		{"wildcard without policy", true, solvers.PersistRecord{IssuerDomainName: pebbleIssuer, AccountURI: acct}, "policy mismatch"},
		{"wrong account", false, solvers.PersistRecord{IssuerDomainName: pebbleIssuer, AccountURI: acct + "0"}, "accounturi mismatch"},
		{"wrong issuer", false, solvers.PersistRecord{IssuerDomainName: "other-ca.example", AccountURI: acct}, "No valid TXT record"},
		{"persistUntil passed", false, solvers.PersistRecord{IssuerDomainName: pebbleIssuer, AccountURI: acct, PersistUntil: past}, "after persistUntil"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			host := "verdict" + strconv.Itoa(i) + ".example.com"
			ca.DNS().AddTXT("_validation-persist."+host, tt.rec.String())
			name := host
			if tt.wildcard {
				name = "*." + host
			}
			_, err := obtain(t, ca, c, acme.ChallengeDNSPersist01, acceptAll{}, acme.DNSNames(name))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Obtain with %q: %v", tt.rec.String(), err)
				}
				return
			}
			var ce *acme.ChallengeError
			if !errors.As(err, &ce) || ce.Type != acme.ChallengeDNSPersist01 || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Obtain with %q: got %v, want the CA's dns-persist-01 failure %q", tt.rec.String(), err, tt.wantErr)
			}
		})
	}
}

// acceptAll is a solver that does nothing: the record is already in DNS.
type acceptAll struct{}

func (acceptAll) Present(context.Context, acme.Challenge) error { return nil }
func (acceptAll) CleanUp(context.Context, acme.Challenge) error { return nil }

// TestDNSPersist01Wildcard: a wildcard needs policy=wildcard; read-only
// asks for it, and one record serves the name and its wildcard in one
// order; with a provider, the record is created with it.
func TestDNSPersist01Wildcard(t *testing.T) {
	t.Parallel()
	ca, d, c, acct := persistEnv(t)

	ro := newPersist(ca, nil)
	plain := pebbleIssuer + "; accounturi=" + acct
	d.AddTXT("_validation-persist.wild.example.com", plain)
	_, err := obtain(t, ca, c, acme.ChallengeDNSPersist01, ro, acme.DNSNames("*.wild.example.com"))
	var pe *solvers.PersistRecordError
	if !errors.As(err, &pe) || !strings.Contains(pe.Reason, "policy=wildcard") || pe.Record.String() != plain+"; policy=wildcard" {
		t.Fatalf("wildcard without policy: got %v, want the instruction to add policy=wildcard", err)
	}
	d.DeleteTXT("_validation-persist.wild.example.com", plain)
	d.AddTXT(pe.Name, pe.Record.String())
	cert, err := obtain(t, ca, c, acme.ChallengeDNSPersist01, ro, acme.DNSNames("wild.example.com", "*.wild.example.com"))
	if err != nil {
		t.Fatalf("name and wildcard with policy=wildcard: %v", err)
	}
	if got := cert.Leaf().DNSNames; len(got) != 2 {
		t.Errorf("names %q, want the name and its wildcard", got)
	}

	prov := &countingProvider{DNSProvider: &dns01test.Provider{Server: d}}
	pw := newPersist(ca, prov)
	if _, err := obtain(t, ca, c, acme.ChallengeDNSPersist01, pw, acme.DNSNames("*.pw.example.com")); err != nil {
		t.Fatalf("wildcard with a provider: %v", err)
	}
	if got := d.TXT("_validation-persist.pw.example.com"); len(got) != 1 || got[0] != plain+"; policy=wildcard" {
		t.Errorf("record created %q, want [%q]", got, plain+"; policy=wildcard")
	}
	// The name itself is covered by that record: no second write.
	if _, err := obtain(t, ca, c, acme.ChallengeDNSPersist01, pw, acme.DNSNames("pw.example.com")); err != nil {
		t.Fatalf("the name under a wildcard record: %v", err)
	}
	if a, del := prov.counts(); a != 1 || del != 0 {
		t.Errorf("%d appends, %d deletes; want 1, 0", a, del)
	}
}

// TestDNSPersist01Replace: with a provider, a record of this account that
// no longer does (its persistUntil passed, or a new one is configured) is
// replaced, keeping its wildcard scope; records of others stay.
func TestDNSPersist01Replace(t *testing.T) {
	t.Parallel()
	ca, d, c, acct := persistEnv(t)
	const name = "_validation-persist.replace.example.com"
	old := pebbleIssuer + "; accounturi=" + acct + "; policy=wildcard; persistUntil=" + strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)
	other := pebbleIssuer + "; accounturi=https://127.0.0.1/my-account/other"
	d.AddTXT(name, old)
	d.AddTXT(name, other)
	prov := &countingProvider{DNSProvider: &dns01test.Provider{Server: d}}
	s := newPersist(ca, prov)
	until := time.Now().Add(90 * 24 * time.Hour).Truncate(time.Second)
	s.PersistUntil = until
	var logs testsetup.Buffer
	s.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	if _, err := obtain(t, ca, c, acme.ChallengeDNSPersist01, s, acme.DNSNames("replace.example.com")); err != nil {
		t.Fatalf("Obtain: %v", err)
	}
	want := pebbleIssuer + "; accounturi=" + acct + "; policy=wildcard; persistUntil=" + strconv.FormatInt(until.Unix(), 10)
	got := d.TXT(name)
	if len(got) != 2 || got[0] != other || got[1] != want {
		t.Errorf("records %q, want [%q %q]", got, other, want)
	}
	if a, del := prov.counts(); a != 1 || del != 1 {
		t.Errorf("%d appends, %d deletes; want 1, 1", a, del)
	}
	if strings.Contains(logs.String(), "persistUntil is near") {
		t.Errorf("warned of a persistUntil 90 days ahead: %s", logs.String())
	}

	// A record ending within the warning period is used, with a warning.
	s2 := newPersist(ca, nil)
	s2.PersistUntilWarning = 100 * 24 * time.Hour
	s2.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	if _, err := obtain(t, ca, c, acme.ChallengeDNSPersist01, s2, acme.DNSNames("replace.example.com")); err != nil {
		t.Fatalf("Obtain with a record ending soon: %v", err)
	}
	if !strings.Contains(logs.String(), "persistUntil is near") {
		t.Errorf("no warning of the near persistUntil in %q", logs.String())
	}
	if !s2.EndsSoon(solvers.PersistRecord{PersistUntil: until}) || s.EndsSoon(solvers.PersistRecord{PersistUntil: until}) {
		t.Error("EndsSoon disagrees with PersistUntilWarning")
	}
}

// TestDNSPersist01CNAME: a CNAME at _validation-persist.<name> is followed,
// for the check and for the record created.
func TestDNSPersist01CNAME(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	d := ca.DNS()
	d.AddZone("example.com")
	d.AddZone("validation.test")
	d.SetCNAME("_validation-persist.cn.example.com", "cn.persist.validation.test")
	c := newClient(t, ca)

	_, err := obtain(t, ca, c, acme.ChallengeDNSPersist01, newPersist(ca, nil), acme.DNSNames("cn.example.com"))
	var pe *solvers.PersistRecordError
	if !errors.As(err, &pe) || pe.Name != "cn.persist.validation.test" {
		t.Fatalf("read-only behind a CNAME: got %v, want the instruction for the CNAME's target", err)
	}
	prov := &countingProvider{DNSProvider: &dns01test.Provider{Server: d}}
	if _, err := obtain(t, ca, c, acme.ChallengeDNSPersist01, newPersist(ca, prov), acme.DNSNames("cn.example.com")); err != nil {
		t.Fatalf("with a provider behind a CNAME: %v", err)
	}
	if got := d.TXT("cn.persist.validation.test"); len(got) != 1 || got[0] != pe.Record.String() {
		t.Errorf("record at the target %q, want [%q]", got, pe.Record.String())
	}
	if got := d.TXT("_validation-persist.cn.example.com"); got != nil {
		t.Errorf("record written at the alias: %q", got)
	}
}

func TestDNSPersist01PresentRefuses(t *testing.T) {
	good := acme.Challenge{Type: acme.ChallengeDNSPersist01, URL: "u", Identifier: dnsID("example.com"),
		IssuerDomainNames: []string{"ca.example"}, AccountURI: "https://ca.example/acct/1"}
	tests := []struct {
		name string
		mod  func(*acme.Challenge)
		want error
	}{
		{"no issuers", func(c *acme.Challenge) { c.IssuerDomainNames = nil }, acme.ErrMalformedChallenge},
		{"bad account", func(c *acme.Challenge) { c.AccountURI = "a b" }, acme.ErrMalformedChallenge},
		{"IP identifier", func(c *acme.Challenge) { c.Identifier = ipID("192.0.2.1") }, solvers.ErrInvalidIdentifier},
		{"bad name", func(c *acme.Challenge) { c.Identifier.Value = "a..b" }, solvers.ErrInvalidIdentifier},
		{"other type", func(c *acme.Challenge) { c.Type = acme.ChallengeDNS01 }, acme.ErrMalformedChallenge},
	}
	dnsSrv := testsetup.DNS(t, "example.com")
	for _, tt := range tests {
		prov := &countingProvider{DNSProvider: &dns01test.Provider{Server: dnsSrv}}
		s := &solvers.DNSPersist01{Provider: prov, Resolvers: []string{dnsSrv.Addr()}}
		chal := good
		tt.mod(&chal)
		if err := s.Present(t.Context(), chal); !errors.Is(err, tt.want) {
			t.Errorf("%s: Present = %v, want an error wrapping %v", tt.name, err, tt.want)
		}
		if a, _ := prov.counts(); a != 0 {
			t.Errorf("%s: %d records appended, want none", tt.name, a)
		}
	}
}

// TestDNSPersist01SlowPropagation: a record appended but not yet visible
// is waited for, not appended again by the next challenge that needs it
// (here the wildcard's, in the same order).
func TestDNSPersist01SlowPropagation(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	d := ca.DNS()
	d.AddZone("example.com")
	prov := &countingProvider{DNSProvider: &dns01test.Provider{Server: d, Delay: 300 * time.Millisecond}}
	s := newPersist(ca, prov)
	s.Wildcard = true
	c := newClient(t, ca)
	if _, err := obtain(t, ca, c, acme.ChallengeDNSPersist01, s, acme.DNSNames("slow.example.com", "*.slow.example.com")); err != nil {
		t.Fatalf("Obtain: %v", err)
	}
	if a, del := prov.counts(); a != 1 || del != 0 {
		t.Errorf("%d appends, %d deletes; want 1, 0", a, del)
	}
	if got := d.TXT("_validation-persist.slow.example.com"); len(got) != 1 {
		t.Errorf("records %q, want exactly one", got)
	}
}
