package main

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/internal/testsetup"
)

// check of a server whose certificate its CA's CRL lists: revoked, a
// problem, exit 3 — not OK; one the CRL does not list is OK and says so.
func TestCheckRevoked(t *testing.T) {
	t.Parallel()
	now := time.Now()
	ca := testsetup.NewAuthority(t, "CRL test CA")
	caCert, caDER := ca.Cert, ca.Cert.Raw
	roots := filepath.Join(t.TempDir(), "roots.pem")
	os.WriteFile(roots, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)

	var crl atomic.Pointer[[]byte]
	var fetches atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Write(*crl.Load())
	}))
	defer srv.Close()
	leaf := func(serial int64, name string) tls.Certificate {
		c := ca.Issue(t, &x509.Certificate{SerialNumber: big.NewInt(serial), DNSNames: []string{name}, NotBefore: now.Add(-time.Hour),
			NotAfter: now.Add(60 * 24 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			CRLDistributionPoints: []string{srv.URL + "/1.crl"}})
		c.Certificate = append(c.Certificate, caDER) // leaf and root, the chain the server sends
		return c
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: big.NewInt(66), RevocationTime: now.Add(-time.Minute), ReasonCode: 1}}}, caCert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	crl.Store(&der)

	revoked := testsetup.ServeCertificate(t, leaf(66, "revoked.example.com"))
	r := runCmd(t, nil, "check", revoked, "--sni", "revoked.example.com", "--trust", roots)
	if r.code != exitProblem || !strings.HasPrefix(r.stdout, "PROBLEM:") || !strings.Contains(r.stdout, "certificate revoked") ||
		!strings.Contains(r.stdout, "revocation:  revoked at") || !strings.Contains(r.stdout, "reason keyCompromise") {
		t.Errorf("revoked: exit %d, stdout:\n%s\nwant exit 3 and the revocation", r.code, r.stdout)
	}
	var out checkOutput
	runCmd(t, nil, "check", revoked, "--sni", "revoked.example.com", "--trust", roots, "--json").decode(t, &out)
	if out.OK || !out.Revoked || len(out.Problems) != 1 {
		t.Errorf("revoked --json: %+v", out)
	}

	fine := testsetup.ServeCertificate(t, leaf(67, "fine.example.com"))
	r = runCmd(t, nil, "check", fine, "--sni", "fine.example.com", "--trust", roots).ok(t)
	if !strings.Contains(r.stdout, "revocation:  not revoked (CRL "+srv.URL+"/1.crl)") {
		t.Errorf("not revoked:\n%s", r.stdout)
	}

	// The CRL cannot be read: the revocation is unknown, which check says
	// without making it a problem.
	bad := []byte("not a CRL")
	crl.Store(&bad)
	other := testsetup.ServeCertificate(t, leaf(68, "other.example.com"))
	r = runCmd(t, nil, "check", other, "--sni", "other.example.com", "--trust", roots).ok(t)
	if !strings.Contains(r.stdout, "revocation:  unknown: revocation: invalid CRL") {
		t.Errorf("unreadable CRL:\n%s", r.stdout)
	}
}
