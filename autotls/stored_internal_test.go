package autotls

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/storage"
)

// testCA is a root and an intermediate that signs leaves, as public CAs
// issue them.
type testCA struct {
	key      *ecdsa.PrivateKey
	cert     *x509.Certificate
	interPEM []byte
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rt := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, rt, rt, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(der)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	it := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{Organization: []string{"Test"}, CommonName: "T1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		IssuingCertificateURL: []string{"http://x.i.test.example/"}, CRLDistributionPoints: []string{"http://x.c.test.example/"}}
	der, err = x509.CreateCertificate(rand.Reader, it, root, &key.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{key: key, cert: cert, interPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns the PEM chain (leaf, intermediate) of a new certificate
// for names and its key.
func (ca *testCA) issue(t testing.TB, notAfter time.Time, names ...string) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		IssuingCertificateURL: []string{"http://t1.i.test.example/"}, CRLDistributionPoints: []string{"http://t1.c.test.example/1.crl"},
		ExtraExtensions: []pkix.Extension{{Id: []int{1, 3, 6, 1, 4, 1, 11129, 2, 4, 2}, Value: append([]byte{0x04, 0x81, 0xf0}, make([]byte, 0xf0)...)}}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), ca.interPEM...), key
}

const testDirectory = "https://acme-v02.api.letsencrypt.org/directory"

// BenchmarkStoredLoad is the storage read and parse a handshake for a
// stored name pays (loadStoredFrom, from a memory storage), against
// reading the same chain and key as a bare PEM pair (two values) into a
// tls.Certificate.
func BenchmarkStoredLoad(b *testing.B) {
	ca := newTestCA(b)
	ctx := context.Background()
	const name = "host1.example.com"
	chain, key := ca.issue(b, time.Now().Add(90*24*time.Hour), name)
	store := storage.NewMemory()
	if err := StoreForTest(ctx, store, testDirectory, name, chain, key); err != nil {
		b.Fatal(err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		b.Fatal(err)
	}
	if store.Store(ctx, "pem/"+name+".crt", chain) != nil || store.Store(ctx, "pem/"+name+".key", keyPEM) != nil {
		b.Fatal("storing the PEM pair")
	}
	m := &Manager{DirectoryURL: testDirectory, Storage: store}
	defer m.Close()
	iss := m.state().issuers[0]
	b.Run("impl=manager", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := m.loadStoredFrom(ctx, iss, name); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=pem-pair", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c, err := store.Load(ctx, "pem/"+name+".crt")
			if err != nil {
				b.Fatal(err)
			}
			k, err := store.Load(ctx, "pem/"+name+".key")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := tls.X509KeyPair(c, k); err != nil {
				b.Fatal(err)
			}
		}
	})
}
