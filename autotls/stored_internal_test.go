package autotls

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"math/big"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/storage"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files of testdata/")

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
	m := &Manager{Issuers: []Issuer{{DirectoryURL: testDirectory}}, Storage: store}
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

// goldenV1 is a value in format 1, as tlsmint wrote it before format 2:
// a chain of leaf and intermediate for golden.example.com (valid until
// 2099, from a throwaway test CA), its key, and every metadata field.
const goldenV1 = "testdata/stored-v1.json"

// goldenV2 is the same value in format 2, as encodeStoredCert writes it
// (rewrite it with go test -run TestStoredGolden -update).
const goldenV2 = "testdata/stored-v2.bin"

func readGolden(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A format 1 value decodes into the same metadata, chain and key as its
// format 2 rewrite, which is exactly the golden file; both serve.
func TestStoredGolden(t *testing.T) {
	v1b := readGolden(t, goldenV1)
	v1, err := decodeStored(v1b)
	if err != nil {
		t.Fatalf("decoding format 1: %v", err)
	}
	if v1.version != 1 {
		t.Fatalf("version %d, want 1", v1.version)
	}
	v2b, err := encodeStoredCert(v1)
	if err != nil {
		t.Fatal(err)
	}
	if *updateGolden {
		if err := os.WriteFile(goldenV2, v2b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if want := readGolden(t, goldenV2); !bytes.Equal(v2b, want) {
		t.Fatalf("format 2 encoding changed:\ngot  %q\nwant %q", v2b, want)
	}
	if !bytes.HasPrefix(v2b, []byte("tlsmint certificate v2\n")) {
		t.Fatalf("format 2 value starts with %q", v2b[:24])
	}
	v2, err := decodeStored(v2b)
	if err != nil {
		t.Fatalf("decoding format 2: %v", err)
	}
	if v2.version != 2 {
		t.Fatalf("version %d, want 2", v2.version)
	}
	v1.version = 2
	if !reflect.DeepEqual(v1, v2) {
		t.Fatalf("format 2 decodes to\n%+v\nwant (as format 1)\n%+v", v2, v1)
	}
	want := storedMeta{
		Name: "golden.example.com", Issuer: testDirectory,
		OrderURL: "https://acme-v02.api.letsencrypt.org/acme/order/1/2", CertificateURL: "https://acme-v02.api.letsencrypt.org/acme/cert/03",
		ObtainedAt: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), AccountURL: "https://acme-v02.api.letsencrypt.org/acme/acct/1",
		ARI:         &ariState{WindowStart: time.Date(2098, 11, 1, 0, 0, 0, 0, time.UTC), WindowEnd: time.Date(2098, 11, 3, 0, 0, 0, 0, time.UTC), NextPoll: time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC)},
		LastFailure: &failureState{At: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), Error: "acme: urn:ietf:params:acme:error:rateLimited: too many"},
	}
	if !reflect.DeepEqual(v2.storedMeta, want) {
		t.Fatalf("metadata %+v, want %+v", v2.storedMeta, want)
	}
	for _, s := range []*storedCert{v1, v2} {
		c, err := s.tlsCertificate("golden.example.com", nil)
		if err != nil {
			t.Fatalf("format %d: %v", s.version, err)
		}
		if len(c.Certificate) != 2 || c.Leaf.Subject.CommonName != "golden.example.com" || c.Leaf.SerialNumber.Int64() != 0x1234567 {
			t.Fatalf("format %d: chain of %d, leaf %s %v", s.version, len(c.Certificate), c.Leaf.Subject.CommonName, c.Leaf.SerialNumber)
		}
		if _, err := s.tlsCertificate("other.example.com", nil); !errors.Is(err, errCorrupt) {
			t.Fatalf("format %d for another name: got %v, want errCorrupt", s.version, err)
		}
	}
}

// A certificate in memory holds none of the stored value's bytes, and the
// certificates of one CA share its intermediate.
func TestStoredParseShares(t *testing.T) {
	ca := newTestCA(t)
	var in interner
	var certs []*tls.Certificate
	for _, name := range []string{"a.example.com", "b.example.com"} {
		chain, key := ca.issue(t, time.Now().Add(time.Hour), name)
		der, _ := encodeKeyDER(key)
		b, err := encodeStoredCert(&storedCert{storedMeta: storedMeta{Name: name}, Chain: chainDER(chain), Key: der})
		if err != nil {
			t.Fatal(err)
		}
		s, err := decodeStored(b)
		if err != nil {
			t.Fatal(err)
		}
		c, err := s.tlsCertificate(name, in.der)
		if err != nil {
			t.Fatal(err)
		}
		for i, der := range c.Certificate {
			if inside(b, der) {
				t.Errorf("%s: certificate %d points into the stored value", name, i)
			}
		}
		if inside(b, c.Leaf.Raw) {
			t.Errorf("%s: the parsed leaf points into the stored value", name)
		}
		certs = append(certs, c)
	}
	if &certs[0].Certificate[1][0] != &certs[1].Certificate[1][0] {
		t.Errorf("the two chains hold separate copies of their intermediate")
	}
	if &certs[0].Certificate[0][0] == &certs[1].Certificate[0][0] {
		t.Errorf("the two leaves share memory")
	}
	if s := in.str(strings.Repeat("x", 10)); in.str(strings.Repeat("x", 10)) != s || len(in.strs) != 1 {
		t.Errorf("interned strings: %d kept", len(in.strs))
	}
}

// inside reports whether sub's memory lies within b's.
func inside(b, sub []byte) bool {
	if len(sub) == 0 || len(b) == 0 {
		return false
	}
	for i := range b {
		if &b[i] == &sub[0] {
			return true
		}
	}
	return false
}

// An interner stops adding values at its bound and then returns copies.
func TestInternerBounded(t *testing.T) {
	var in interner
	for i := range internMaxValues + 10 {
		der := []byte(strings.Repeat("d", 8) + string(rune('a'+i%26)) + strings.Repeat("e", i))
		got := in.der(der)
		if !bytes.Equal(got, der) || &got[0] == &der[0] {
			t.Fatalf("der(%d) = %q, want a copy of %q", i, got, der)
		}
	}
	if len(in.ders) != internMaxValues {
		t.Fatalf("%d values kept, want %d", len(in.ders), internMaxValues)
	}
	big := make([]byte, internMaxDER+1)
	if got := in.der(big); len(got) != len(big) || len(in.ders) != internMaxValues {
		t.Fatalf("an oversized value was kept")
	}
}

// corruptions are stored values that must be refused with errCorrupt; key
// is the private key (DER) they hold, which no error may contain.
func corruptions(t testing.TB) (cases map[string][]byte, key []byte) {
	t.Helper()
	ca := newTestCA(t)
	chain, k := ca.issue(t, time.Now().Add(time.Hour), "example.com")
	_, other := ca.issue(t, time.Now().Add(time.Hour), "example.com")
	key, _ = encodeKeyDER(k)
	otherKey, _ := encodeKeyDER(other)
	ders := chainDER(chain)
	enc := func(s *storedCert) []byte {
		b, err := encodeStoredCert(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := enc(&storedCert{storedMeta: storedMeta{Name: "example.com", AccountURL: "https://ca.example/acct/1"}, Chain: ders, Key: key})
	// reseal recomputes the checksum of a changed value, so that what is
	// tested is the field it changed.
	reseal := func(b []byte) []byte {
		body := b[:len(b)-4]
		return binary.BigEndian.AppendUint32(bytes.Clone(body), crc32.Checksum(body, castagnoli))
	}
	// raw builds a format 2 value field by field.
	raw := func(meta []byte, n uint64, fields ...[]byte) []byte {
		b := append([]byte(storedMagic), binary.AppendUvarint(nil, uint64(len(meta)))...)
		b = append(b, meta...)
		b = binary.AppendUvarint(b, n)
		for _, f := range fields {
			b = binary.AppendUvarint(b, uint64(len(f)))
			b = append(b, f...)
		}
		return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 1
	badKey := key[:len(key)-20] // truncated DER
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}))
	v1 := func(certPEM, keyPEM string, version int) []byte {
		b, _ := json.Marshal(storedV1{Version: version, storedMeta: storedMeta{Name: "example.com"}, CertificatePEM: certPEM, PrivateKeyPEM: keyPEM})
		return b
	}
	return map[string][]byte{
		"empty":                    nil,
		"magic only":               []byte(storedMagic),
		"truncated":                good[:len(good)-10],
		"truncated, resealed":      reseal(good[:len(good)-10]),
		"one bit flipped":          flipped,
		"trailing bytes":           reseal(append(bytes.Clone(good[:len(good)-4]), 0, 0, 0, 0, 1)),
		"future format":            []byte("tlsmint certificate v3\nwhatever"),
		"no certificate":           raw([]byte("{}"), 0, key),
		"too many certificates":    raw([]byte("{}"), 1000, key),
		"certificate count huge":   raw([]byte("{}"), 1<<62, key),
		"length past the end":      append(append([]byte(storedMagic), binary.AppendUvarint(nil, 1<<40)...), 0, 0, 0, 0),
		"metadata not JSON":        raw([]byte("{name"), 2, ders[0], ders[1], key),
		"metadata wrong type":      raw([]byte(`{"name":7}`), 2, ders[0], ders[1], key),
		"no key":                   raw([]byte("{}"), 2, ders[0], ders[1]),
		"leaf not DER":             raw([]byte("{}"), 1, []byte("not a certificate"), key),
		"key not PKCS8":            raw([]byte("{}"), 2, ders[0], ders[1], badKey),
		"key of another leaf":      raw([]byte("{}"), 2, ders[0], ders[1], otherKey),
		"key as the leaf":          raw([]byte("{}"), 1, key, key),
		"format 1 not JSON":        []byte(`{"version":1,"private_key_pem":"` + strings.ReplaceAll(keyPEM, "\n", "\\n") + `"` + "\x00"),
		"format 1 version 7":       v1(string(chain), keyPEM, 7),
		"format 1 no certificate":  v1("", keyPEM, 1),
		"format 1 no key":          v1(string(chain), "", 1),
		"format 1 key of another":  v1(string(chain), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: otherKey})), 1),
		"format 1 key not a key":   v1(string(chain), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: key})), 1),
		"format 1 key bad EC":      v1(string(chain), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: badKey})), 1),
		"format 1 key bad PKCS8":   v1(string(chain), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: badKey})), 1),
		"format 1 certificate key": v1(keyPEM, keyPEM, 1),
	}, key
}

// secretForms are the ways a key's bytes could be printed.
func secretForms(key []byte) []string {
	return []string{string(key[len(key)-40:]), hex.EncodeToString(key[len(key)-20:]), base64.StdEncoding.EncodeToString(key[len(key)-30:]), base64.RawStdEncoding.EncodeToString(key[len(key)-30:]), "PRIVATE KEY"}
}

// Corrupt and hostile values are refused with an error wrapping
// errCorrupt that names no key bytes, and the Manager logs them without
// the key and carries on (fs.ErrNotExist-like: it would order anew).
func TestStoredCorrupt(t *testing.T) {
	cases, key := corruptions(t)
	forms := secretForms(key)
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			s, err := decodeStored(b)
			if err == nil {
				_, err = s.tlsCertificate("example.com", nil)
			}
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("got %v, want errCorrupt", err)
			}
			for _, f := range forms {
				if strings.Contains(err.Error(), f) {
					t.Fatalf("error %q contains key bytes (%q)", err, f)
				}
			}
			var logs bytes.Buffer
			store := storage.NewMemory()
			m := &Manager{Issuers: []Issuer{{DirectoryURL: testDirectory}}, Storage: store, Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
			defer m.Close()
			if err := store.Store(context.Background(), certKey(m.state().issuers[0], "example.com"), b); err != nil {
				t.Fatal(err)
			}
			if _, err := m.loadStored(context.Background(), "example.com"); !errors.Is(err, errCorrupt) {
				t.Fatalf("loadStored: got %v, want errCorrupt", err)
			}
			for _, f := range forms[:4] {
				if strings.Contains(logs.String(), f) || strings.Contains(logs.String(), strings.ReplaceAll(f, "/", "\\/")) {
					t.Fatalf("logs contain key bytes:\n%s", logs.String())
				}
			}
		})
	}
}

// FuzzDecodeStored feeds the decoder arbitrary values: it never panics,
// every error wraps errCorrupt and quotes no key, and whatever decodes and
// parses encodes again to a value that decodes to the same. A format 2
// input is also tried with its checksum recomputed, so that the fuzzer
// reaches the fields behind the checksum.
func FuzzDecodeStored(f *testing.F) {
	cases, key := corruptions(f)
	for _, b := range cases {
		f.Add(b)
	}
	f.Add(readGoldenF(f, goldenV1))
	f.Add(readGoldenF(f, goldenV2))
	forms := secretForms(key)
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b, forms)
		if bytes.HasPrefix(b, []byte(storedMagic)) && len(b) >= len(storedMagic)+4 {
			body := b[:len(b)-4]
			checkDecode(t, binary.BigEndian.AppendUint32(bytes.Clone(body), crc32.Checksum(body, castagnoli)), forms)
		}
	})
}

func checkDecode(t *testing.T, b []byte, forms []string) {
	s, err := decodeStored(b)
	var c *tls.Certificate
	if err == nil {
		c, err = s.tlsCertificate(s.Name, nil)
	}
	if err != nil {
		if !errors.Is(err, errCorrupt) {
			t.Fatalf("error %v does not wrap errCorrupt", err)
		}
		for _, f := range forms {
			if strings.Contains(err.Error(), f) {
				t.Fatalf("error %q contains key bytes", err)
			}
		}
		return
	}
	if c.Leaf == nil || len(c.Certificate) != len(s.Chain) {
		t.Fatalf("parsed %d certificates of %d", len(c.Certificate), len(s.Chain))
	}
	again, err := encodeStoredCert(s)
	if err != nil {
		t.Fatalf("re-encoding: %v", err)
	}
	s2, err := decodeStored(again)
	if err != nil {
		t.Fatalf("decoding the re-encoded value: %v", err)
	}
	s.version, s2.version = 0, 0
	if !reflect.DeepEqual(s, s2) {
		t.Fatalf("re-encoded value decodes to %+v, want %+v", s2, s)
	}
}

func readGoldenF(f *testing.F, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// A renewal that finds its own certificate in storage recognises it from
// the leaf's bytes and parses nothing (errSameStored, which counts as
// nothing stored); a newer stored certificate is parsed and returned.
func TestLoadStoredOther(t *testing.T) {
	ca := newTestCA(t)
	ctx := context.Background()
	store := storage.NewMemory()
	m := &Manager{Issuers: []Issuer{{DirectoryURL: testDirectory}}, Storage: store}
	defer m.Close()
	m.state()
	const name = "example.com"
	chain, key := ca.issue(t, time.Now().Add(time.Hour), name)
	if err := StoreForTest(ctx, store, testDirectory, name, chain, key); err != nil {
		t.Fatal(err)
	}
	current, err := m.loadStored(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.loadStoredOther(ctx, name, current); !errors.Is(err, errSameStored) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("loading what current holds: got %v, want errSameStored", err)
	}
	newer, newKey := ca.issue(t, time.Now().Add(2*time.Hour), name)
	if err := StoreForTest(ctx, store, testDirectory, name, newer, newKey); err != nil {
		t.Fatal(err)
	}
	e, err := m.loadStoredOther(ctx, name, current)
	if err != nil || !e.notAfter.After(current.notAfter) {
		t.Fatalf("loading a newer one: got %v, want it", err)
	}
}
