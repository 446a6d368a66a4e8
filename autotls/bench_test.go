package autotls_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/storage"
)

const benchDirectory = "https://ca.invalid/directory"

// fixture is a local CA that signs leaf certificates quickly, so that
// benchmarks can fill storage with thousands of certificates. Like Let's
// Encrypt it signs leaves with an intermediate, and a chain holds the leaf
// and the intermediate; the leaves carry the extensions a public CA's do
// (AIA, CRL distribution point, policy, two embedded SCTs' worth of bytes).
type fixture struct {
	rootKey *ecdsa.PrivateKey
	root    *x509.Certificate
	caKey   *ecdsa.PrivateKey // the intermediate's key
	ca      *x509.Certificate // the intermediate, which signs leaves
	caPEM   []byte
	leafKy  *ecdsa.PrivateKey // the key of leafPEMValid
}

func newFixture(b testing.TB) *fixture {
	b.Helper()
	rootKey := testsetup.Key(b)
	root := testsetup.Sign(b, &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, rootKey.Public(), nil, rootKey)
	caKey := testsetup.Key(b)
	ca := testsetup.Sign(b, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{Country: []string{"US"}, Organization: []string{"Bench Encrypt"}, CommonName: "B1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(3 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IssuingCertificateURL: []string{"http://x2.i.bench.example/"},
		CRLDistributionPoints: []string{"http://x2.c.bench.example/"},
		Policies:              []x509.OID{mustOID(b, "2.23.140.1.2.1")},
	}, caKey.Public(), root, rootKey)
	return &fixture{rootKey: rootKey, root: root, caKey: caKey, ca: ca, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), leafKy: testsetup.Key(b)}
}

func mustOID(b testing.TB, s string) x509.OID {
	o, err := x509.ParseOID(s)
	if err != nil {
		b.Fatal(err)
	}
	return o
}

// chainPEM returns the PEM chain (leaf, then the intermediate) of a leaf
// for name with key's public key.
func (f *fixture) chainPEM(b testing.TB, name string, serial int64, notBefore, notAfter time.Time, key *ecdsa.PrivateKey) []byte {
	b.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: notBefore, NotAfter: notAfter,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		IssuingCertificateURL: []string{"http://b1.i.bench.example/"},
		CRLDistributionPoints: []string{"http://b1.c.bench.example/42.crl"},
		Policies:              []x509.OID{mustOID(b, "2.23.140.1.2.1")},
		// Two SCTs, as public CAs embed (RFC 6962 section 3.3).
		ExtraExtensions: []pkix.Extension{{Id: []int{1, 3, 6, 1, 4, 1, 11129, 2, 4, 2}, Value: sctBytes}},
	}
	leaf := testsetup.Sign(b, tmpl, key.Public(), f.ca, f.caKey)
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}), f.caPEM...)
}

// sctBytes is the size of two embedded SCTs (an OCTET STRING of 0xf0
// bytes); their content does not matter here.
var sctBytes = append([]byte{0x04, 0x81, 0xf0}, make([]byte, 0xf0)...)

// leafPEMValid is the chain of a certificate for name with the key
// leafKy and the given validity.
func (f *fixture) leafPEMValid(b testing.TB, name string, serial int64, notBefore, notAfter time.Time) []byte {
	return f.chainPEM(b, name, serial, notBefore, notAfter, f.leafKy)
}

// leafPEM is the chain of a 90-day certificate for name with the key
// leafKy, valid from an hour ago.
func (f *fixture) leafPEM(b testing.TB, name string, serial int64) []byte {
	return f.leafPEMValid(b, name, serial, time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour))
}

func benchNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("host%d.bench.example.com", i)
	}
	return names
}

// pemPair is a certificate chain and its key, in PEM, as a bare loader
// reads them from two files.
type pemPair struct{ chain, key []byte }

// storeN fills a memory store with n certificates, each with its own key,
// and returns the names and their PEM chains and keys.
func storeN(b testing.TB, f *fixture, n int) (storage.Storage, []string, []pemPair) {
	b.Helper()
	return storeNFor(b, f, n, benchDirectory)
}

// storeNFor is storeN for the CA whose directory is dir.
func storeNFor(b testing.TB, f *fixture, n int, dir string) (storage.Storage, []string, []pemPair) {
	b.Helper()
	store := storage.NewMemory()
	names := benchNames(n)
	pairs := make([]pemPair, n)
	for i, name := range names {
		key := testsetup.Key(b)
		pairs[i] = pemPair{f.chainPEM(b, name, int64(i+2), time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour), key), keyPEM(b, key)}
		if err := autotls.StoreForTest(context.Background(), store, dir, name, pairs[i].chain, key); err != nil {
			b.Fatal(err)
		}
	}
	return store, names, pairs
}

// storeDue stores in store n certificates of f, for due0.example.org on,
// valid from notBefore to notAfter, as the CA whose directory is dir
// issued them, and returns their names.
func storeDue(t testing.TB, f *fixture, store storage.Storage, dir string, n int, notBefore, notAfter time.Time) []string {
	t.Helper()
	names := make([]string, n)
	for i := range names {
		names[i] = "due" + itoa(i) + ".example.org"
		chain := f.leafPEMValid(t, names[i], int64(i+2), notBefore, notAfter)
		if err := autotls.StoreForTest(context.Background(), store, dir, names[i], chain, f.leafKy); err != nil {
			t.Fatal(err)
		}
	}
	return names
}

func benchManager(store storage.Storage, names []string) *autotls.Manager {
	return &autotls.Manager{Issuers: []autotls.Issuer{{DirectoryURL: benchDirectory}}, Storage: store, Hosts: autotls.HostWhitelist(names...), AcceptTOS: true}
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
	store, names, pairs := storeN(b, f, 1)
	m := benchManager(store, names)
	defer m.Close()
	static, err := tls.X509KeyPair(pairs[0].chain, pairs[0].key)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(f.root)
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

// BenchmarkHandshakeCached is a full TLS 1.3 handshake over loopback TCP
// for each of 10,000 cached names in turn, through a Manager started just
// before (so its start-up's background work, if any, runs beside the
// handshakes) that has served every name once, against a GetCertificate
// that reads a bare map of the same certificates. The Manager's CA is the
// in-process Pebble, which offers renewal information (ARI), so what the
// Manager asks the CA about the certificates it loaded runs too. B/op and
// allocs/op count every goroutine's allocations, the Manager's background
// included; ari-requests/op is the renewalInfo requests the CA saw.
func BenchmarkHandshakeCached(b *testing.B) {
	f := newFixture(b)
	const n = 10000
	ca := testsetup.CA(b, testpebble.Options{Wrap: ariWindow(60 * 24 * time.Hour)})
	store, names, pairs := storeNFor(b, f, n, ca.DirectoryURL())
	bare := make(map[string]*tls.Certificate, n)
	for i, name := range names {
		c, err := tls.X509KeyPair(pairs[i].chain, pairs[i].key)
		if err != nil {
			b.Fatal(err)
		}
		bare[name] = &c
	}
	pool := x509.NewCertPool()
	pool.AddCert(f.root)
	for _, tc := range []struct {
		name  string
		setup func() (*tls.Config, func())
	}{
		{"impl=map", func() (*tls.Config, func()) {
			return &tls.Config{
				GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) { return bare[h.ServerName], nil },
				NextProtos:     []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12,
			}, func() {}
		}},
		{"impl=manager", func() (*tls.Config, func()) {
			m := benchManager(store, names)
			m.Issuers, m.HTTPClient = []autotls.Issuer{{DirectoryURL: ca.DirectoryURL()}}, ca.HTTPClient()
			cfg := m.TLSConfig()
			for _, name := range names {
				if _, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: name}); err != nil {
					b.Fatal(err)
				}
			}
			return cfg, func() { m.Close() }
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg, done := tc.setup()
			defer done()
			addr := testsetup.ServeTLS(b, "127.0.0.1:0", cfg)
			client := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
			b.ReportAllocs()
			ari := ca.Requests("renewalInfo")
			i := 0
			for b.Loop() {
				client.ServerName = names[i]
				c, err := tls.Dial("tcp", addr, client)
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
				if i++; i == n {
					i = 0
				}
			}
			b.ReportMetric(float64(ca.Requests("renewalInfo")-ari)/float64(b.N), "ari-requests/op")
		})
	}
}

// ariWindow answers every renewalInfo request (whatever the certificate:
// the benchmarks' are not Pebble's) with a window starting in from now and
// a Retry-After of six hours.
func ariWindow(in time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.Contains(r.URL.Path, "renewalInfo/") {
				next.ServeHTTP(w, r)
				return
			}
			start := time.Now().UTC().Add(in)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "21600")
			json.NewEncoder(w).Encode(map[string]any{"suggestedWindow": map[string]time.Time{"start": start, "end": start.Add(24 * time.Hour)}})
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
// 10,000 cached, next to the heap of the same certificates parsed from
// their PEM chains and keys into a map[string]*tls.Certificate (each chain
// a leaf and the intermediate, as a CA serves them).
func BenchmarkCacheMemory(b *testing.B) {
	f := newFixture(b)
	const n = 10000
	store, names, pairs := storeN(b, f, n)
	for b.Loop() {
		runtime.GC()
		var m0, m1, m2 runtime.MemStats
		runtime.ReadMemStats(&m0)
		bare := make(map[string]*tls.Certificate, n)
		for i, name := range names {
			c, err := tls.X509KeyPair(pairs[i].chain, pairs[i].key)
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
// stored name once (serve-all), side by side with two other ways to start
// serving the same certificates, in the same run:
//
//   - impl=pem-map, the floor: read each name's chain and key as two bare
//     PEM values and parse them with tls.X509KeyPair into a map, the
//     cheapest any loader can do;
//   - impl=autocert: golang.org/x/crypto/acme/autocert's Manager over a
//     Cache holding each name's key and chain in one PEM value (as
//     autocert stores them), GetCertificate for each name once.
//
// Each reads from memory (storage=memory: storage.NewMemory, an in-memory
// autocert.Cache) and, with 1,000 names, from files in a folder
// (storage=dir: storage.Dir, the PEM files read with os.ReadFile,
// autocert.DirCache). Every hello is the same, one that a TLS 1.3 client
// sends (autocert chooses the ECDSA certificate from it). The Manager's
// storage holds the schedule index a previous Manager left, as at a
// restart. Each start-up closes its Manager right after its last
// handshake, before its discovery and storage watcher begin (they wait
// for the handshakes' loads to pause): what is measured is the
// handshakes' share of a start-up.
func BenchmarkStartup(b *testing.B) {
	f := newFixture(b)
	for _, n := range []int{0, 1000, 10000} {
		store, names, pairs := storeN(b, f, max(n, 1))
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
		storages := []string{"memory"}
		if n == 1000 {
			storages = append(storages, "dir")
		}
		for _, kind := range storages {
			src := newStartupSource(b, kind, store, names, pairs)
			for _, impl := range []struct {
				name  string
				serve func(b *testing.B, hello func(string) *tls.ClientHelloInfo)
			}{
				{"manager", src.serveManager},
				{"pem-map", src.servePEMMap},
				{"autocert", src.serveAutocert},
			} {
				b.Run(fmt.Sprintf("stored=%d/serve-all/storage=%s/impl=%s", n, kind, impl.name), func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						impl.serve(b, startupHello)
					}
				})
			}
		}
	}
}

// startupHello is the ClientHello of BenchmarkStartup: what a TLS 1.3
// client offers, as crypto/tls passes it to GetCertificate.
func startupHello(name string) *tls.ClientHelloInfo {
	return &tls.ClientHelloInfo{
		ServerName:        name,
		CipherSuites:      []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
		SupportedCurves:   []tls.CurveID{tls.X25519, tls.CurveP256},
		SignatureSchemes:  []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256, tls.PSSWithSHA256},
		SupportedProtos:   []string{"h2", "http/1.1"},
		SupportedVersions: []uint16{tls.VersionTLS13, tls.VersionTLS12},
	}
}

// startupSource is the same certificates in the stores of the three
// start-ups of BenchmarkStartup.
type startupSource struct {
	names []string
	store storage.Storage // the Manager's
	// pem loads a name's chain and key as two bare PEM values.
	pem func(name string) (chain, key []byte, err error)
	ac  autocert.Cache // autocert's: key and chain in one value
}

func newStartupSource(b *testing.B, kind string, mem storage.Storage, names []string, pairs []pemPair) *startupSource {
	b.Helper()
	ctx := context.Background()
	src := &startupSource{names: names}
	switch kind {
	case "memory":
		src.store = mem
		bare := storage.NewMemory()
		for i, name := range names {
			if bare.Store(ctx, "pem/"+name+".crt", pairs[i].chain) != nil || bare.Store(ctx, "pem/"+name+".key", pairs[i].key) != nil {
				b.Fatal("storing PEM pairs")
			}
		}
		src.pem = func(name string) ([]byte, []byte, error) {
			chain, err := bare.Load(ctx, "pem/"+name+".crt")
			if err != nil {
				return nil, nil, err
			}
			key, err := bare.Load(ctx, "pem/"+name+".key")
			return chain, key, err
		}
		src.ac = &autocertMemory{m: map[string][]byte{}}
	case "dir":
		dir := storage.Dir(b.TempDir())
		copyStorage(b, dir, mem)
		src.store = dir
		pemDir := b.TempDir()
		for i, name := range names {
			if os.WriteFile(filepath.Join(pemDir, name+".crt"), pairs[i].chain, 0o600) != nil || os.WriteFile(filepath.Join(pemDir, name+".key"), pairs[i].key, 0o600) != nil {
				b.Fatal("writing PEM files")
			}
		}
		src.pem = func(name string) ([]byte, []byte, error) {
			chain, err := os.ReadFile(filepath.Join(pemDir, name+".crt"))
			if err != nil {
				return nil, nil, err
			}
			key, err := os.ReadFile(filepath.Join(pemDir, name+".key"))
			return chain, key, err
		}
		src.ac = autocert.DirCache(b.TempDir())
	}
	// A restart: the previous Manager left the schedule index of every
	// name (without it, each start-up loads in the background the names
	// the index lacks and writes their records).
	autotls.CompleteIndexForTest(benchManager(src.store, names))
	for i, name := range names {
		// autocert's value: the key, then the chain; ECDSA under the name.
		if err := src.ac.Put(ctx, name, append(append([]byte{}, pairs[i].key...), pairs[i].chain...)); err != nil {
			b.Fatal(err)
		}
	}
	return src
}

func (src *startupSource) serveManager(b *testing.B, hello func(string) *tls.ClientHelloInfo) {
	m := benchManager(src.store, src.names)
	for _, name := range src.names {
		if c, err := m.GetCertificate(hello(name)); c == nil || err != nil {
			b.Fatalf("%s: %v", name, err)
		}
	}
	m.Close()
}

func (src *startupSource) servePEMMap(b *testing.B, hello func(string) *tls.ClientHelloInfo) {
	bare := make(map[string]*tls.Certificate, len(src.names))
	for _, name := range src.names {
		chain, key, err := src.pem(name)
		if err != nil {
			b.Fatal(err)
		}
		c, err := tls.X509KeyPair(chain, key)
		if err != nil {
			b.Fatal(err)
		}
		bare[name] = &c
	}
	for _, name := range src.names {
		if bare[hello(name).ServerName] == nil {
			b.Fatalf("%s: not loaded", name)
		}
	}
}

func (src *startupSource) serveAutocert(b *testing.B, hello func(string) *tls.ClientHelloInfo) {
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      src.ac,
		HostPolicy: autocert.HostWhitelist(src.names...),
		// A name autocert could not load would be ordered: from nowhere.
		Client: &acme.Client{DirectoryURL: "http://127.0.0.1:1/directory"},
	}
	for _, name := range src.names {
		c, err := m.GetCertificate(hello(name))
		if c == nil || err != nil {
			b.Fatalf("autocert, %s: %v", name, err)
		}
		if c.Leaf == nil || c.Leaf.DNSNames[0] != name {
			b.Fatalf("autocert, %s: served another certificate", name)
		}
	}
	// autocert.Manager has no Close: its renewal timers, one per name, fire
	// 30 days before expiry, long after the benchmark.
}

// autocertMemory is an autocert.Cache in memory, as storage.NewMemory is
// for the Manager.
type autocertMemory struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (c *autocertMemory) Get(_ context.Context, key string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[key]
	if !ok {
		return nil, autocert.ErrCacheMiss
	}
	return bytes.Clone(v), nil
}

func (c *autocertMemory) Put(_ context.Context, key string, data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[key] = bytes.Clone(data)
	return nil
}

func (c *autocertMemory) Delete(_ context.Context, key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, key)
	return nil
}

// copyStorage copies every key of src into dst.
func copyStorage(tb testing.TB, dst, src storage.Storage) {
	tb.Helper()
	ctx := context.Background()
	keys, err := src.List(ctx, "")
	if err != nil {
		tb.Fatal(err)
	}
	for _, k := range keys {
		v, err := src.Load(ctx, k)
		if err == nil {
			err = dst.Store(ctx, k, v)
		}
		if err != nil {
			tb.Fatalf("copying %s: %v", k, err)
		}
	}
}

// BenchmarkCertificates is Manager.Certificates for 10,000 stored
// certificates of which none is in memory, from a memory storage and from
// a directory: a status page's or `tlsmint certs list`'s cost.
func BenchmarkCertificates(b *testing.B) {
	f := newFixture(b)
	const n = 10000
	mem, names, _ := storeN(b, f, n)
	dir := storage.Dir(b.TempDir())
	copyStorage(b, dir, mem)
	for _, s := range []struct {
		name  string
		store storage.Storage
	}{{"memory", mem}, {"dir", dir}} {
		b.Run("storage="+s.name, func(b *testing.B) {
			m := benchManager(s.store, names)
			defer m.Close()
			b.ReportAllocs()
			for b.Loop() {
				infos, err := m.Certificates(context.Background())
				if err != nil || len(infos) != n {
					b.Fatalf("Certificates: %d, %v", len(infos), err)
				}
			}
		})
	}
}
