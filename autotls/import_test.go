package autotls_test

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"slices"
	"testing"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/storage"
)

// nopSolver answers nothing: for a CA that validates everything.
type nopSolver struct{}

func (nopSolver) Present(context.Context, acme.Challenge) error { return nil }
func (nopSolver) CleanUp(context.Context, acme.Challenge) error { return nil }

func obtainElsewhere(t *testing.T, ca *testpebble.CA, names ...string) (*acme.Certificate, *ecdsa.PrivateKey, string) {
	t.Helper()
	c := testsetup.Registered(t, ca)
	key := testsetup.Key(t)
	cert, err := c.Obtain(ctxT(t), acme.ObtainRequest{Identifiers: acme.DNSNames(names...), CertKey: key, Solvers: map[string]acme.Solver{acme.ChallengeHTTP01: nopSolver{}}})
	if err != nil {
		t.Fatal(err)
	}
	return cert, key, c.AccountURL
}

func TestImportCertificateServedWithoutOrders(t *testing.T) {
	ca := testsetup.CA(t, testpebble.Options{AlwaysValid: true})
	ctx := ctxT(t)
	cert, key, account := obtainElsewhere(t, ca, "imp.example.com", "www.imp.example.com")
	store := storage.Dir(t.TempDir())
	for _, name := range autotls.CertificateNames(cert.Leaf()) {
		err := autotls.ImportCertificate(ctx, store, autotls.ImportedCertificate{
			Directory: ca.DirectoryURL(), Name: name, ChainPEM: cert.Chain.PEM, Key: key, AccountURL: account,
		})
		if err != nil {
			t.Fatalf("ImportCertificate(%s): %v", name, err)
		}
	}
	issuers, err := autotls.StoredIssuers(ctx, store)
	if err != nil || !slices.Equal(issuers, []string{ca.DirectoryURL()}) {
		t.Fatalf("StoredIssuers = %v, %v", issuers, err)
	}

	orders := ca.Requests("newOrder")
	m := &autotls.Manager{Issuers: []autotls.Issuer{{DirectoryURL: ca.DirectoryURL()}}, HTTPClient: ca.HTTPClient(), Storage: store, AcceptTOS: true,
		Hosts: autotls.HostWhitelist("imp.example.com", "www.imp.example.com")}
	defer m.Close()
	for _, name := range []string{"imp.example.com", "www.imp.example.com"} {
		got, err := m.GetCertificate(hello(name))
		if err != nil {
			t.Fatalf("GetCertificate(%s): %v", name, err)
		}
		if got.Leaf.SerialNumber.Cmp(cert.Leaf().SerialNumber) != 0 {
			t.Errorf("%s: served serial %x, want the imported %x", name, got.Leaf.SerialNumber, cert.Leaf().SerialNumber)
		}
	}
	if n := ca.Requests("newOrder") - orders; n != 0 {
		t.Errorf("%d orders placed, want 0", n)
	}
	infos, err := m.Certificates(ctx)
	if err != nil || len(infos) != 2 {
		t.Fatalf("Certificates = %d, %v", len(infos), err)
	}

	// The same again: kept, unless Replace.
	imp := autotls.ImportedCertificate{Directory: ca.DirectoryURL(), Name: "imp.example.com", ChainPEM: cert.Chain.PEM, Key: key}
	if err := autotls.ImportCertificate(ctx, store, imp); !errors.Is(err, autotls.ErrNewerStored) {
		t.Errorf("importing again: %v, want ErrNewerStored", err)
	}
	imp.Replace = true
	if err := autotls.ImportCertificate(ctx, store, imp); err != nil {
		t.Errorf("importing again with Replace: %v", err)
	}
}

func TestImportCertificateInvalid(t *testing.T) {
	ca := testsetup.CA(t, testpebble.Options{AlwaysValid: true})
	cert, key, _ := obtainElsewhere(t, ca, "a.example.com")
	other := testsetup.Key(t)
	good := autotls.ImportedCertificate{Directory: ca.DirectoryURL(), Name: "a.example.com", ChainPEM: cert.Chain.PEM, Key: key}
	cases := map[string]func(*autotls.ImportedCertificate){
		"key mismatch":  func(c *autotls.ImportedCertificate) { c.Key = other },
		"no key":        func(c *autotls.ImportedCertificate) { c.Key = nil },
		"name not held": func(c *autotls.ImportedCertificate) { c.Name = "b.example.com" },
		"invalid name":  func(c *autotls.ImportedCertificate) { c.Name = "a/../b" },
		"no chain":      func(c *autotls.ImportedCertificate) { c.ChainPEM = nil },
		"garbage chain": func(c *autotls.ImportedCertificate) {
			c.ChainPEM = []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
		},
		"http directory": func(c *autotls.ImportedCertificate) { c.Directory = "http://ca.example/dir" },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			store := storage.NewMemory()
			c := good
			mod(&c)
			if err := autotls.ImportCertificate(ctxT(t), store, c); !errors.Is(err, autotls.ErrInvalidImport) {
				t.Errorf("got %v, want ErrInvalidImport", err)
			}
			if keys, _ := store.List(ctxT(t), "certificates/"); len(keys) != 0 {
				t.Errorf("stored %v", keys)
			}
		})
	}
}
