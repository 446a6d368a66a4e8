package watchdog_test

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/revocation"
	"github.com/tlsmint/tlsmint/watchdog"
)

// A served leaf its issuer's CRL lists is revoked: a problem, whatever
// its expiry; one it does not list, or that names no CRL, is fine; each
// CRL is fetched once for many probes.
func TestRevoked(t *testing.T) {
	ca := newTestCA(t)
	now := time.Now()
	issuer := ca.root.Intermediate(t, "watchdog test CRL issuer")

	var crl []byte
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write(crl)
	}))
	defer srv.Close()
	leaf := func(name string) tls.Certificate {
		tmpl := testsetup.Template(now.Add(-time.Hour), now.Add(90*24*time.Hour), name)
		tmpl.CRLDistributionPoints = []string{srv.URL + "/1.crl"}
		return issuer.Issue(t, tmpl)
	}
	revoked, fine := leaf("revoked.test"), leaf("fine.test")
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: revoked.Leaf.SerialNumber, RevocationTime: now.Add(-time.Minute), ReasonCode: 1}}}, issuer.Cert, issuer.Key)
	if err != nil {
		t.Fatal(err)
	}
	crl = der

	w := &watchdog.Watchdog{Roots: ca.pool}
	defer w.Close()
	revAddr, fineAddr := testsetup.ServeCertificate(t, revoked), testsetup.ServeCertificate(t, fine)
	for range 3 {
		r, err := w.Check(ctxT(t), watchdog.Target{Addr: revAddr, ServerName: "revoked.test"})
		if err != nil {
			t.Fatal(err)
		}
		checkProblems(t, r, watchdog.ErrRevoked)
		if !r.Revocation.Revoked || !strings.Contains(r.Err().Error(), "reason keyCompromise") || watchdog.ProblemName(r.Problems[0]) != "revoked" {
			t.Errorf("revoked: %v, %+v", r.Err(), r.Revocation)
		}
		r, _ = w.Check(ctxT(t), watchdog.Target{Addr: fineAddr, ServerName: "fine.test"})
		checkProblems(t, r)
		if !r.Revocation.Checked || r.Revocation.Revoked || r.RevocationErr != nil {
			t.Errorf("not revoked: %+v, %v", r.Revocation, r.RevocationErr)
		}
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("%d CRL fetches for 6 probes, want 1", n)
	}

	// A CRL that cannot be read is not a problem of the served
	// certificate, but the result says so.
	w2 := &watchdog.Watchdog{Roots: ca.pool, Revocation: &revocation.Checker{MaxSize: 8}}
	defer w2.Close()
	r, _ := w2.Check(ctxT(t), watchdog.Target{Addr: revAddr, ServerName: "revoked.test"})
	checkProblems(t, r)
	if !errors.Is(r.RevocationErr, revocation.ErrFetch) {
		t.Errorf("RevocationErr %v, want ErrFetch", r.RevocationErr)
	}
}
