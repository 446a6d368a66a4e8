package main

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/statuspage"
)

func TestCertsAuditRateLimits(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	acct := ca.account(t)
	store := t.TempDir()

	var out certOutput
	ca.run(t, "--account-key", acct, "--storage", store, "--json", "obtain", "list.example.com", "www.list.example.com", "--http", ca.httpAddr()).ok(t).decode(t, &out)
	if !slices.Equal(out.Stored, []string{"list.example.com", "www.list.example.com"}) || out.CertFile != "" {
		t.Errorf("obtain into storage: %+v, want stored under both names and no files", out)
	}
	ca.run(t, "--account-key", acct, "--storage", store, "obtain", "other.example.org", "--tls-alpn", ca.tlsAddr()).ok(t)

	// certs list: the status page's data.
	var st statuspage.Status
	runCmd(t, nil, "certs", "list", "--storage", store, "--json").ok(t).decode(t, &st)
	var names []string
	for _, c := range st.Certificates {
		names = append(names, c.Name)
		if c.State != statuspage.StateOK || c.Issuer != ca.DirectoryURL() || c.DaysLeft < 80 || c.RenewAt.IsZero() || c.RenewReason == "" || !c.Stored {
			t.Errorf("certs list: %+v", c)
		}
	}
	slices.Sort(names)
	if want := []string{"list.example.com", "other.example.org", "www.list.example.com"}; !slices.Equal(names, want) {
		t.Errorf("certs list names %v, want %v", names, want)
	}
	r := runCmd(t, map[string]string{"TLSMINT_STORAGE": store}, "certs", "list").ok(t)
	for _, w := range []string{"NAME", "STATE", "list.example.com", "other.example.org", " ok "} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("certs list table lacks %q:\n%s", w, r.stdout)
		}
	}
	// --ca selects the CA: another one has nothing here.
	runCmd(t, nil, "--ca", "letsencrypt-staging", "certs", "list", "--storage", store, "--json").ok(t).decode(t, &st)
	if len(st.Certificates) != 0 {
		t.Errorf("certs list for another CA: %d certificates", len(st.Certificates))
	}

	var c statuspage.Certificate
	runCmd(t, nil, "certs", "show", "WWW.List.Example.com.", "--storage", store, "--json").ok(t).decode(t, &c)
	if c.Name != "www.list.example.com" || !slices.Contains(c.Names, "list.example.com") || c.Serial != out.Serial {
		t.Errorf("certs show: %+v", c)
	}
	r = runCmd(t, nil, "certs", "show", "list.example.com", "--storage", store).ok(t)
	if !strings.Contains(r.stdout, "serial:") || !strings.Contains(r.stdout, out.Serial) || !strings.Contains(r.stdout, "renew at:") {
		t.Errorf("certs show text:\n%s", r.stdout)
	}
	runCmd(t, nil, "certs", "show", "nope.example.com", "--storage", store).fails(t, exitFailure, "no certificate for nope.example.com")
	missing := filepath.Join(store, "missing")
	runCmd(t, nil, "certs", "list", "--storage", missing).fails(t, exitUsage, "does not exist")
	noFile(t, missing)
	runCmd(t, nil, "certs", "list").fails(t, exitUsage, "no storage: pass --storage")

	// audit: the exchanges of the obtains and their decisions.
	var recs []record.Audit
	runCmd(t, nil, "audit", "--storage", store, "--name", "list.example.com", "--json").ok(t).decode(t, &recs)
	ops := map[string]bool{}
	for _, rec := range recs {
		ops[rec.Operation] = true
		if !slices.Contains(rec.Names, "list.example.com") {
			t.Errorf("audit --name returned %+v", rec)
		}
	}
	for _, op := range []string{"newOrder", "finalize", "obtained"} {
		if !ops[op] {
			t.Errorf("audit lacks %s: %v", op, ops)
		}
	}
	r = runCmd(t, nil, "audit", "--storage", store, "--kind", "decision").ok(t)
	if !strings.Contains(r.stdout, "obtained") || strings.Contains(r.stdout, "newOrder") {
		t.Errorf("audit --kind decision:\n%s", r.stdout)
	}
	runCmd(t, nil, "audit", "--storage", store, "--since", "soon").fails(t, exitUsage, "--since")
	runCmd(t, nil, "audit", "--storage", store, "--outcome", "meh").fails(t, exitUsage, "--outcome")

	var limits []statuspage.RateLimit
	runCmd(t, nil, "ratelimits", "--storage", store, "--json").ok(t).decode(t, &limits)
	found := map[string]int{}
	for _, l := range limits {
		found[l.Kind+" "+l.Key] = l.Count
	}
	if found["certificates_per_domain example.com"] != 2 || found["certificates_per_domain example.org"] != 1 {
		t.Errorf("ratelimits: %v", found)
	}
	if r := runCmd(t, nil, "ratelimits", "--storage", store).ok(t); !strings.Contains(r.stdout, "certificates_per_domain") {
		t.Errorf("ratelimits table:\n%s", r.stdout)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	_, crt, key := ca.obtained(t, "check.example.com")
	pair, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	addr := testsetup.ServeCertificate(t, pair)

	var out checkOutput
	runCmd(t, nil, "check", addr, "--sni", "check.example.com", "--trust", ca.issuers, "--json").ok(t).decode(t, &out)
	if !out.OK || out.DaysLeft < 80 || !slices.Equal(out.Names, []string{"check.example.com"}) || len(out.Chain) < 2 || len(out.Problems) != 0 {
		t.Errorf("healthy: %+v", out)
	}
	if r := runCmd(t, nil, "check", addr, "--sni", "check.example.com", "--trust", ca.issuers).ok(t); !strings.HasPrefix(r.stdout, "OK:") {
		t.Errorf("healthy text:\n%s", r.stdout)
	}

	// Expiring within --warn (a 90-day certificate, warn at 100 days).
	r := runCmd(t, nil, "check", addr, "--sni", "check.example.com", "--trust", ca.issuers, "--warn", "100d")
	if r.code != exitProblem || !strings.Contains(r.stdout, "expires soon") {
		t.Errorf("expiring: exit %d, stdout %s", r.code, r.stdout)
	}
	// Wrong name.
	r = runCmd(t, nil, "check", addr, "--sni", "other.example.com", "--trust", ca.issuers)
	if r.code != exitProblem || !strings.Contains(r.stdout, "does not cover") {
		t.Errorf("wrong name: exit %d, stdout %s", r.code, r.stdout)
	}
	// Not verifying: the system's roots do not know the test CA.
	r = runCmd(t, nil, "check", addr, "--sni", "check.example.com", "--json")
	r.decode(t, &out)
	if r.code != exitProblem || out.OK || !strings.Contains(strings.Join(out.Problems, " "), "does not verify") {
		t.Errorf("untrusted: exit %d, %+v", r.code, out)
	}
	// An expired certificate, even with --warn 0.
	expired := selfSigned(t, "old.example.com", time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	old := testsetup.ServeCertificate(t, expired)
	r = runCmd(t, nil, "check", old, "--sni", "old.example.com", "--warn", "0")
	if r.code != exitProblem || !strings.Contains(r.stdout, "expired") {
		t.Errorf("expired: exit %d, stdout %s", r.code, r.stdout)
	}
	// Nothing listens.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l.Addr().String()
	l.Close()
	r = runCmd(t, nil, "check", closed, "--sni", "x.example.com")
	if r.code != exitProblem || !strings.Contains(r.stdout, "unreachable") {
		t.Errorf("unreachable: exit %d, stdout %s", r.code, r.stdout)
	}
	runCmd(t, nil, "check", addr, "--warn", "soon").fails(t, exitUsage, "--warn")

	// With --ca, the CA's ARI: a window ahead is fine; one moved into the
	// past is a problem, with the CA's explanation.
	ca.run(t, "check", addr, "--sni", "check.example.com", "--trust", ca.issuers).ok(t)
	past := time.Now().Add(-time.Hour)
	if err := ca.SetRenewalInfo(pair.Leaf, past.Add(-time.Hour), past, "https://ca.example/incident"); err != nil {
		t.Fatal(err)
	}
	r = ca.run(t, "check", addr, "--sni", "check.example.com", "--trust", ca.issuers)
	if r.code != exitProblem || !strings.Contains(r.stdout, "renewal requested by the CA") || !strings.Contains(r.stdout, "https://ca.example/incident") {
		t.Errorf("ARI window in the past: exit %d, stdout:\n%s", r.code, r.stdout)
	}
	runCmd(t, nil, "check", addr, "--sni", "check.example.com", "--trust", ca.issuers).ok(t) // without --ca: no ARI
}

func selfSigned(t *testing.T, name string, nb, na time.Time) tls.Certificate {
	t.Helper()
	return testsetup.SelfSigned(t, &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: nb, NotAfter: na, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
}
