package autotls_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/storage"
)

const benchDirectory = "https://ca.invalid/directory"

// fixture is a local CA that signs leaf certificates quickly, so that
// benchmarks can fill storage with thousands of certificates.
type fixture struct {
	caKey  *ecdsa.PrivateKey
	ca     *x509.Certificate
	leafKy *ecdsa.PrivateKey
}

func newFixture(b testing.TB) *fixture {
	b.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		b.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return &fixture{caKey: caKey, ca: ca, leafKy: leafKey}
}

func (f *fixture) leafPEM(b testing.TB, name string, serial int64) []byte {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		AuthorityKeyId: []byte{1, 2, 3, 4},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.ca, &f.leafKy.PublicKey, f.caKey)
	if err != nil {
		b.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// leafPEMValid is leafPEM with the given validity.
func (f *fixture) leafPEMValid(b testing.TB, name string, serial int64, notBefore, notAfter time.Time) []byte {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: notBefore, NotAfter: notAfter,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		AuthorityKeyId: []byte{1, 2, 3, 4},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.ca, &f.leafKy.PublicKey, f.caKey)
	if err != nil {
		b.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func benchNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("host%d.bench.example.com", i)
	}
	return names
}

// storeN fills a memory store with n certificates and returns the names and
// their PEM chains.
func storeN(b testing.TB, f *fixture, n int) (storage.Storage, []string, [][]byte) {
	b.Helper()
	store := storage.NewMemory()
	names := benchNames(n)
	pems := make([][]byte, n)
	for i, name := range names {
		pems[i] = f.leafPEM(b, name, int64(i+2))
		if err := autotls.StoreForTest(context.Background(), store, benchDirectory, name, pems[i], f.leafKy); err != nil {
			b.Fatal(err)
		}
	}
	return store, names, pems
}

func benchManager(store storage.Storage, names []string) *autotls.Manager {
	return &autotls.Manager{DirectoryURL: benchDirectory, Storage: store, Hosts: autotls.HostWhitelist(names...), AcceptTOS: true}
}

// BenchmarkGetCertificate compares a cache hit with a bare map lookup of
// the same names, for 1 and 10,000 cached certificates.
func BenchmarkGetCertificate(b *testing.B) {
	f := newFixture(b)
	for _, n := range []int{1, 10000} {
		store, names, _ := storeN(b, f, n)
		m := benchManager(store, names)
		defer m.Close()
		hellos := make([]*tls.ClientHelloInfo, n)
		bare := make(map[string]*tls.Certificate, n)
		for i, name := range names {
			hellos[i] = &tls.ClientHelloInfo{ServerName: name, SupportedProtos: []string{"h2", "http/1.1"}}
			c, err := m.GetCertificate(hellos[i])
			if err != nil {
				b.Fatal(err)
			}
			bare[name] = c
		}
		hits := func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if c, _ := m.GetCertificate(hellos[i]); c == nil {
					b.Fatal("miss")
				}
				i++
				if i == n {
					i = 0
				}
			}
		}
		b.Run(fmt.Sprintf("names=%d/impl=manager", n), hits)
		if n > 1 {
			// Renewals swap certificates in while handshakes are served:
			// 100 swaps a second, each rebuilding the read view.
			b.Run(fmt.Sprintf("names=%d/impl=manager-renewing", n), func(b *testing.B) {
				stop := make(chan struct{})
				done := make(chan struct{})
				go func() {
					defer close(done)
					t := time.NewTicker(10 * time.Millisecond)
					defer t.Stop()
					for j := 0; ; j++ {
						select {
						case <-stop:
							return
						case <-t.C:
							autotls.SwapForTest(m, names[j%n])
						}
					}
				}()
				hits(b)
				b.StopTimer()
				close(stop)
				<-done
			})
		}
		b.Run(fmt.Sprintf("names=%d/impl=map", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if c := bare[hellos[i].ServerName]; c == nil {
					b.Fatal("miss")
				}
				i++
				if i == n {
					i = 0
				}
			}
		})
	}
}

// BenchmarkHandshake is a full TLS 1.3 handshake (P-256 certificate,
// X25519) through the Manager and through a static Config.Certificates.
func BenchmarkHandshake(b *testing.B) {
	f := newFixture(b)
	store, names, pems := storeN(b, f, 1)
	m := benchManager(store, names)
	defer m.Close()
	static, err := tls.X509KeyPair(pems[0], keyPEM(b, f.leafKy))
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(f.ca)
	client := &tls.Config{ServerName: names[0], RootCAs: pool, MinVersion: tls.VersionTLS13}
	mcfg := m.TLSConfig()
	if _, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: names[0]}); err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
	}{
		{"config=static", &tls.Config{Certificates: []tls.Certificate{static}, NextProtos: mcfg.NextProtos, MinVersion: tls.VersionTLS12}},
		{"config=manager", mcfg},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c1, c2 := net.Pipe()
				srv := tls.Server(c1, tc.cfg)
				done := make(chan error, 1)
				go func() { done <- srv.Handshake() }()
				cl := tls.Client(c2, client)
				if err := cl.Handshake(); err != nil {
					b.Fatal(err)
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				c1.Close()
				c2.Close()
			}
		})
	}
}

func keyPEM(b testing.TB, k *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		b.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// BenchmarkCacheMemory reports the heap held per cached certificate with
// 10,000 cached, next to the heap of the same certificates parsed into a
// map[string]*tls.Certificate.
func BenchmarkCacheMemory(b *testing.B) {
	f := newFixture(b)
	const n = 10000
	store, names, pems := storeN(b, f, n)
	kp := keyPEM(b, f.leafKy)
	for b.Loop() {
		runtime.GC()
		var m0, m1, m2 runtime.MemStats
		runtime.ReadMemStats(&m0)
		bare := make(map[string]*tls.Certificate, n)
		for i, name := range names {
			c, err := tls.X509KeyPair(pems[i], kp)
			if err != nil {
				b.Fatal(err)
			}
			bare[name] = &c
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		m := benchManager(store, names)
		for _, name := range names {
			if _, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: name}); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&m2)
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/n, "map-B/cert")
		b.ReportMetric(float64(int64(m2.HeapAlloc)-int64(m1.HeapAlloc))/n, "manager-B/cert")
		runtime.KeepAlive(bare)
		m.Close()
	}
}

// BenchmarkStartup measures a new Manager over storage holding N
// certificates: the time to its first served handshake, and to serve every
// stored name once, against parsing the same values into a map.
func BenchmarkStartup(b *testing.B) {
	f := newFixture(b)
	for _, n := range []int{0, 10000} {
		store, names, pems := storeN(b, f, max(n, 1))
		if n == 0 {
			store = storage.NewMemory() // nothing stored but the one name
			autotls.StoreForTest(context.Background(), store, benchDirectory, names[0], pems[0], f.leafKy)
		}
		b.Run(fmt.Sprintf("stored=%d/first-handshake", n), func(b *testing.B) {
			for b.Loop() {
				m := benchManager(store, names[:1])
				if _, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: names[0]}); err != nil {
					b.Fatal(err)
				}
				m.Close()
			}
		})
		if n == 0 {
			continue
		}
		b.Run(fmt.Sprintf("stored=%d/serve-all", n), func(b *testing.B) {
			for b.Loop() {
				m := benchManager(store, names)
				for _, name := range names {
					if _, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: name}); err != nil {
						b.Fatal(err)
					}
				}
				m.Close()
			}
		})
		// The floor: read every stored value and parse it (JSON, then
		// certificate and key) into a map, as any loader must.
		b.Run(fmt.Sprintf("stored=%d/parse-into-map", n), func(b *testing.B) {
			keys, err := store.List(context.Background(), "certificates")
			if err != nil || len(keys) != n {
				b.Fatalf("List: %d keys, %v", len(keys), err)
			}
			for b.Loop() {
				bare := make(map[string]*tls.Certificate, n)
				for _, k := range keys {
					v, err := store.Load(context.Background(), k)
					if err != nil {
						b.Fatal(err)
					}
					var s struct {
						Name           string `json:"name"`
						CertificatePEM string `json:"certificate_pem"`
						PrivateKeyPEM  string `json:"private_key_pem"`
					}
					if err := json.Unmarshal(v, &s); err != nil {
						b.Fatal(err)
					}
					c, err := tls.X509KeyPair([]byte(s.CertificatePEM), []byte(s.PrivateKeyPEM))
					if err != nil {
						b.Fatal(err)
					}
					bare[s.Name] = &c
				}
			}
		})
	}
}
