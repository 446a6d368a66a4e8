package autotls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/storage"
)

// TestLoadedCertificatesFirstARILookSpread: certificates loaded from
// storage by handshakes get their first ARI poll at a random point of
// the first hours (as names planned from the index do), not all within
// the first minute, when their polls would run beside the handshakes of
// a start-up (BenchmarkHandshakeCached measured about 80 more allocations
// per handshake that way).
func TestLoadedCertificatesFirstARILookSpread(t *testing.T) {
	const n = 200
	store := storage.NewMemory()
	dir := "https://ca.invalid/directory"
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("host%d.example.com", i)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 1)), DNSNames: []string{names[i]},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		if err := StoreForTest(t.Context(), store, dir, names[i], pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key); err != nil {
			t.Fatal(err)
		}
	}
	m := &Manager{Issuers: []Issuer{{DirectoryURL: dir}}, Storage: store, Hosts: HostWhitelist(names...), AcceptTOS: true}
	defer m.Close()
	start := time.Now()
	for _, name := range names {
		if _, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: name}); err != nil {
			t.Fatal(err)
		}
	}
	early := 0
	for _, name := range names {
		e := m.state().cache.get(name)
		if e == nil {
			t.Fatalf("%s not cached", name)
		}
		if e.ariPoll.Before(start) || e.ariPoll.After(time.Now().Add(defaultARIPoll)) {
			t.Errorf("%s: first ARI poll at %v, want within %v of the start", name, e.ariPoll.Sub(start), defaultARIPoll)
		}
		if e.ariPoll.Before(start.Add(10 * time.Minute)) {
			early++
		}
	}
	// Uniform over six hours: about 5.6 of 200 in the first ten minutes.
	if early > 25 {
		t.Errorf("%d of %d loaded certificates poll ARI within 10 minutes of loading, want them spread over %v", early, n, defaultARIPoll)
	}
}
