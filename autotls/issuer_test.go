package autotls_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/storage"
)

// twoCAClient trusts the HTTPS servers of both test CAs.
func twoCAClient(cas ...*testpebble.CA) *http.Client {
	var pools []*x509.CertPool
	for _, ca := range cas {
		pools = append(pools, ca.TLSRoots())
	}
	verify := func(cs tls.ConnectionState) error {
		for _, p := range pools {
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: p, DNSName: cs.ServerName}); err == nil {
				return nil
			}
		}
		return errors.New("not one of the test CAs")
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, VerifyConnection: verify},
		ForceAttemptHTTP2: true,
	}}
}

// twoIssuers returns a Manager whose issuers are two test CAs, with the
// challenge servers of both forwarding to it.
func twoIssuers(t *testing.T, mod func(*autotls.Manager)) (*autotls.Manager, *env, *env) {
	t.Helper()
	e1, e2 := newEnv(t, testpebble.Options{}), newEnv(t, testpebble.Options{})
	m := e1.manager(t, storage.NewMemory(), func(m *autotls.Manager) {
		m.Issuers = []autotls.Issuer{{DirectoryURL: e1.ca.DirectoryURL()}, {DirectoryURL: e2.ca.DirectoryURL()}}
		m.HTTPClient = twoCAClient(e1.ca, e2.ca)
		if mod != nil {
			mod(m)
		}
	})
	e2.ch.Use(m)
	return m, e1, e2
}

// The first issuer broken: the certificate comes from the second, and the
// events name both.
func TestIssuerFallback(t *testing.T) {
	t.Parallel()
	ev := newEventLog()
	m, e1, e2 := twoIssuers(t, func(m *autotls.Manager) { m.OnEvent = ev.on })
	if err := e1.ca.SetDown(testpebble.Down503); err != nil {
		t.Fatal(err)
	}
	if err := m.Manage(ctxT(t), "www.example.org"); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	failed := ev.next(t, autotls.EventIssuerFailed, "www.example.org", 10*time.Second)
	if failed.Issuer != e1.ca.DirectoryURL() || failed.Err == nil {
		t.Fatalf("issuer_failed names %q (%v), want the first issuer and its error", failed.Issuer, failed.Err)
	}
	got := ev.next(t, autotls.EventObtained, "www.example.org", 10*time.Second)
	if got.Issuer != e2.ca.DirectoryURL() {
		t.Fatalf("obtained from %q, want the second issuer %q", got.Issuer, e2.ca.DirectoryURL())
	}
	if n := e2.ca.Requests("newOrder"); n != 1 {
		t.Fatalf("%d orders at the second issuer, want 1", n)
	}
	infos, err := m.Certificates(ctxT(t))
	if err != nil || len(infos) != 1 || infos[0].Issuer != e2.ca.DirectoryURL() {
		t.Fatalf("Certificates = %+v, %v; want the certificate from the second issuer", infos, err)
	}
}

// Every issuer broken: the error names each and what it answered.
func TestIssuersAllFail(t *testing.T) {
	t.Parallel()
	m, e1, e2 := twoIssuers(t, nil)
	e1.ca.SetDown(testpebble.Down503)
	if err := e2.ca.RateLimit("newOrder", time.Hour, -1); err != nil {
		t.Fatal(err)
	}
	err := m.Manage(ctxT(t), "www.example.org")
	var ie *autotls.IssuerError
	if !errors.As(err, &ie) {
		t.Fatalf("got %v, want IssuerErrors", err)
	}
	for _, ca := range []*testpebble.CA{e1.ca, e2.ca} {
		if !strings.Contains(err.Error(), ca.DirectoryURL()) {
			t.Errorf("error %q does not name issuer %s", err, ca.DirectoryURL())
		}
	}
	if !strings.Contains(err.Error(), "rateLimited") || !strings.Contains(err.Error(), "serverInternal") {
		t.Errorf("error %q does not say what each issuer answered", err)
	}
}

// An issuer that rate-limited a name is skipped for it until its
// Retry-After is over, even after another issuer succeeded.
func TestIssuerRateLimitKept(t *testing.T) {
	t.Parallel()
	m, e1, e2 := twoIssuers(t, nil)
	if err := e1.ca.RateLimit("newOrder", time.Hour, 1); err != nil {
		t.Fatal(err)
	}
	if err := m.Manage(ctxT(t), "www.example.org"); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	if n := e2.ca.Requests("newOrder"); n != 1 {
		t.Fatalf("%d orders at the second issuer, want 1", n)
	}
	before := e1.ca.Requests("newOrder")
	if err := autotls.RenewForTest(m, "www.example.org"); err != nil {
		t.Fatalf("renewal: %v", err)
	}
	if n := e1.ca.Requests("newOrder") - before; n != 0 {
		t.Fatalf("%d orders at the rate-limiting issuer inside its Retry-After, want 0", n)
	}
	if n := e2.ca.Requests("newOrder"); n != 2 {
		t.Fatalf("%d orders at the second issuer, want 2", n)
	}
}
