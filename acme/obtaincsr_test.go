package acme_test

import (
	"crypto"
	"errors"
	"net/netip"
	"testing"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// TestObtainWithCSR obtains with a caller's CSR: the key never reaches the
// client, and the leaf carries the CSR's key and names.
func TestObtainWithCSR(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	s := newHTTPSolver(t, ca)
	c := registered(t, ca)
	key := newKey(t)
	ids := append(acme.DNSNames("csr.example.com"), acme.IPAddresses(netip.MustParseAddr("127.0.0.1"))...)
	csr, err := acme.CSR(key, ids)
	if err != nil {
		t.Fatal(err)
	}
	cert, _, err := obtain(t, c, s, ids, func(r *acme.ObtainRequest) { r.CertKey, r.CSR = nil, csr })
	if err != nil {
		t.Fatalf("Obtain with CSR: %v", err)
	}
	if !cert.Leaf().PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
		t.Fatal("leaf does not carry the CSR's key")
	}
	verifyChain(t, ca, cert.Chain, "csr.example.com")
}

// TestObtainWithBadCSR refuses unusable CSRs before any order is placed.
func TestObtainWithBadCSR(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	s := newHTTPSolver(t, ca)
	c := registered(t, ca)
	ids := acme.DNSNames("a.example.com")
	mk := func(key crypto.Signer, ids []acme.Identifier) []byte {
		der, err := acme.CSR(key, ids)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	good := mk(newKey(t), ids)
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-5] ^= 0xff
	for _, tc := range []struct {
		name string
		mod  func(*acme.ObtainRequest)
		want error
	}{
		{"extra name", func(r *acme.ObtainRequest) {
			r.CertKey, r.CSR = nil, mk(newKey(t), acme.DNSNames("a.example.com", "b.example.com"))
		}, acme.ErrBadCSRRequest},
		{"missing name", func(r *acme.ObtainRequest) {
			r.Identifiers = acme.DNSNames("a.example.com", "b.example.com")
			r.CertKey, r.CSR = nil, good
		}, acme.ErrBadCSRRequest},
		{"account key", func(r *acme.ObtainRequest) { r.CertKey, r.CSR = nil, mk(c.Key, ids) }, acme.ErrBadCSRRequest},
		{"bad signature", func(r *acme.ObtainRequest) { r.CertKey, r.CSR = nil, tampered }, acme.ErrBadCSRRequest},
		{"garbage", func(r *acme.ObtainRequest) { r.CertKey, r.CSR = nil, []byte("not a csr") }, acme.ErrBadCSRRequest},
		{"both", func(r *acme.ObtainRequest) { r.CSR = good }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := ca.Requests("newOrder")
			_, _, err := obtain(t, c, s, ids, tc.mod)
			if err == nil {
				t.Fatal("Obtain succeeded, want an error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if n := ca.Requests("newOrder") - before; n != 0 {
				t.Fatalf("%d orders placed, want none", n)
			}
		})
	}
}
