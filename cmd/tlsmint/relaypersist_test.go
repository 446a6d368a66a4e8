package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/audit"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/relay"
	"github.com/tlsmint/tlsmint/storage"
)

// TestRelayDNSPersist runs `tlsmint relay` with an upstream proved by
// read-only dns-persist-01 (no DNS credentials, no http01_listen): an
// order whose records are missing fails downstream with an unauthorized
// problem naming the exact record of each name — bound to the relay's
// account at the CA — with nothing submitted to the CA for validation,
// and the relay logs and audits it; once the operator publishes the
// records, the same client obtains the certificate through the relay, and
// the records stay.
func TestRelayDNSPersist(t *testing.T) {
	e := newRelayEnv(t, func(cfg map[string]any) {
		delete(cfg, "http01_listen")
		up := cfg["upstreams"].([]any)[0].(map[string]any)
		dnsAddr := cfg["validator"].(map[string]any)["resolver"].(string) // the CA's mock DNS
		_, port, _ := net.SplitHostPort(dnsAddr)
		p, _ := strconv.Atoi(port)
		up["dns_persist"] = map[string]any{"resolvers": []string{dnsAddr}, "nameserver_port": p}
	})
	e.ca.DNS().AddZone("persist.example")
	r := startRelay(t, e.cfgFile, e.env)

	runCmd(t, e.env, "relay", "tenant", "add", "team", "--admin", r.admin, "--name", "persist.example", "--validation-target", "127.0.0.0/8").ok(t)
	eab := mintEAB(t, e.env, "team", "--admin", r.admin)
	ctx := ctxT(t)
	c := e.client(t)
	if _, err := c.Register(ctx, acme.Account{TermsOfServiceAgreed: true, ExternalAccountBinding: eab}); err != nil {
		t.Fatalf("Register through the relay: %v", err)
	}
	names := []string{"a.persist.example", "b.persist.example"}
	certKey := testsetup.Key(t)
	req := acme.ObtainRequest{Identifiers: acme.DNSNames(names...), CertKey: certKey, Solvers: map[string]acme.Solver{acme.ChallengeHTTP01: e.down}}

	// No record yet: the order fails with the records to publish.
	challenges := e.ca.Requests("challenge")
	_, err := c.Obtain(ctx, req)
	var p *acme.Problem
	if !errors.As(err, &p) || !p.Is(acme.ErrUnauthorized) || p.Status != http.StatusForbidden {
		t.Fatalf("Obtain without the records: %v, want an unauthorized problem (403)", err)
	}
	if n := e.ca.Requests("challenge"); n != challenges {
		t.Errorf("%d challenges submitted to the CA, want none while the records are missing", n-challenges)
	}

	// The relay's account at the CA, from its key in the storage.
	store := storage.Dir(e.storeDir)
	defer store.Close()
	sum := sha256.Sum256([]byte("pebble"))
	pemKey, err := store.Load(ctx, keyUpstreamKeys+hex.EncodeToString(sum[:16]))
	if err != nil {
		t.Fatalf("the relay's upstream account key: %v", err)
	}
	relayKey, err := parseKey(pemKey)
	if err != nil {
		t.Fatal(err)
	}
	relayAcct, err := (&acme.Client{DirectoryURL: e.ca.DirectoryURL(), Key: relayKey, HTTPClient: e.ca.HTTPClient()}).LookupAccount(ctx)
	if err != nil {
		t.Fatalf("the relay's account at the CA: %v", err)
	}
	value := "pebble.letsencrypt.org; accounturi=" + relayAcct.URL
	for _, n := range names {
		line := "_validation-persist." + n + `. IN TXT "` + value + `"`
		if !strings.Contains(p.Detail, line) {
			t.Errorf("the problem's detail lacks %s:\n%s", line, p.Detail)
		}
		if !strings.Contains(r.stderr.String(), "a dns-persist-01 record is missing upstream") || !strings.Contains(r.stderr.String(), n) {
			t.Errorf("the relay's log does not name the record of %s", n)
		}
	}
	t.Logf("problem: %s", p.Detail)
	if !strings.Contains(p.Detail, "upstream pebble") {
		t.Errorf("the problem's detail does not name the upstream: %s", p.Detail)
	}
	// The operator publishes the records; the client orders again.
	for _, n := range names {
		e.ca.DNS().AddTXT("_validation-persist."+n, value)
	}
	cert, err := c.Obtain(ctx, req)
	if err != nil {
		t.Fatalf("Obtain with the records published: %v", err)
	}
	inter := x509.NewCertPool()
	for _, ic := range cert.Chains[0].Certificates[1:] {
		inter.AddCert(ic)
	}
	for _, n := range names {
		if _, err := cert.Leaf().Verify(x509.VerifyOptions{DNSName: n, Roots: e.ca.RootPool(), Intermediates: inter}); err != nil {
			t.Errorf("the certificate does not verify for %s: %v", n, err)
		}
		if got := e.ca.DNS().TXT("_validation-persist." + n); !slices.Equal(got, []string{value}) {
			t.Errorf("DNS holds %q for %s, want the record kept", got, n)
		}
	}
	if n := e.ca.Requests("challenge"); n == challenges {
		t.Error("no challenge submitted to the CA for the issuance")
	}

	// The audit trail, written at the stop: the refusal with the records,
	// then the issuance.
	r.stop()
	if code := <-r.done; code != 0 {
		t.Fatalf("the relay exited with %d", code)
	}
	r.done <- 0
	trail := &audit.Log{Storage: store, Retention: -1}
	defer trail.Close()
	recs, err := trail.Query(ctx, record.AuditFilter{Operation: relay.OperationPrefix + "issue"})
	if err != nil || len(recs) != 2 {
		t.Fatalf("audit relay.issue records %+v (%v), want two", recs, err)
	}
	slices.SortFunc(recs, func(a, b record.Audit) int { return a.Time.Compare(b.Time) })
	if recs[0].Outcome != record.OutcomeFailure || recs[0].Problem != acme.ErrUnauthorized.Type || recs[0].Detail != p.Detail {
		t.Errorf("first relay.issue record %+v, want the failure with the problem's detail", recs[0])
	}
	if recs[1].Outcome != record.OutcomeOK || recs[1].Issuer != "pebble" {
		t.Errorf("second relay.issue record %+v, want the issuance by pebble", recs[1])
	}
}

// dns01Down is a downstream client's dns-01 solver writing to the test
// CA's mock DNS, which the relay's validator asks.
type dns01Down struct{ ca *testCA }

func (d dns01Down) Present(_ context.Context, ch acme.Challenge) error {
	d.ca.DNS().AddTXT(ch.DNS01TXTRecordName(), ch.DNS01TXTValue())
	return nil
}

func (d dns01Down) CleanUp(_ context.Context, ch acme.Challenge) error {
	d.ca.DNS().DeleteTXT(ch.DNS01TXTRecordName(), ch.DNS01TXTValue())
	return nil
}

// TestRelayDNSPersistWildcard: with dns_persist.wildcard, a name and its
// wildcard need one record with policy=wildcard, asked for once; once it
// is published the certificate for both is issued.
func TestRelayDNSPersistWildcard(t *testing.T) {
	e := newRelayEnv(t, func(cfg map[string]any) {
		delete(cfg, "http01_listen")
		up := cfg["upstreams"].([]any)[0].(map[string]any)
		dnsAddr := cfg["validator"].(map[string]any)["resolver"].(string)
		_, port, _ := net.SplitHostPort(dnsAddr)
		p, _ := strconv.Atoi(port)
		up["dns_persist"] = map[string]any{"resolvers": []string{dnsAddr}, "nameserver_port": p, "wildcard": true, "issuer_domain_name": "pebble.letsencrypt.org"}
	})
	e.ca.DNS().AddZone("persist.example")
	r := startRelay(t, e.cfgFile, e.env)
	runCmd(t, e.env, "relay", "tenant", "add", "team", "--admin", r.admin, "--name", "persist.example", "--wildcards", "--validation-target", "127.0.0.0/8").ok(t)
	eab := mintEAB(t, e.env, "team", "--admin", r.admin)
	ctx := ctxT(t)
	c := e.client(t)
	if _, err := c.Register(ctx, acme.Account{TermsOfServiceAgreed: true, ExternalAccountBinding: eab}); err != nil {
		t.Fatalf("Register through the relay: %v", err)
	}
	certKey := testsetup.Key(t)
	req := acme.ObtainRequest{Identifiers: acme.DNSNames("*.w.persist.example", "w.persist.example"), CertKey: certKey,
		Solvers: map[string]acme.Solver{acme.ChallengeDNS01: dns01Down{e.ca}, acme.ChallengeHTTP01: e.down}, ChallengeTypes: []string{acme.ChallengeDNS01}}
	_, err := c.Obtain(ctx, req)
	var p *acme.Problem
	if !errors.As(err, &p) || !p.Is(acme.ErrUnauthorized) {
		t.Fatalf("Obtain without the record: %v, want unauthorized", err)
	}
	re := regexp.MustCompile(`_validation-persist\.w\.persist\.example\. IN TXT "(pebble\.letsencrypt\.org; accounturi=https://[^"; ]+; policy=wildcard)"`)
	m := re.FindAllStringSubmatch(p.Detail, -1)
	if len(m) != 1 || strings.Count(p.Detail, "IN TXT") != 1 {
		t.Fatalf("the problem asks for %d records, want once the one with policy=wildcard:\n%s", strings.Count(p.Detail, "IN TXT"), p.Detail)
	}
	e.ca.DNS().AddTXT("_validation-persist.w.persist.example", m[0][1])
	cert, err := c.Obtain(ctx, req)
	if err != nil {
		t.Fatalf("Obtain with the record published: %v", err)
	}
	if got := cert.Leaf().DNSNames; !slices.Contains(got, "*.w.persist.example") || !slices.Contains(got, "w.persist.example") {
		t.Errorf("certificate names %v", got)
	}
}
