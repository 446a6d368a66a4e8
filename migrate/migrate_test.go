package migrate_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/migrate"
	"github.com/tlsmint/tlsmint/storage"
)

// ctxT and ecKey are testsetup's Context and Key, under the names the
// tests use.
func ctxT(t *testing.T) context.Context    { return testsetup.Context(t) }
func ecKey(t *testing.T) *ecdsa.PrivateKey { return testsetup.Key(t) }

type nopSolver struct{}

func (nopSolver) Present(context.Context, acme.Challenge) error { return nil }
func (nopSolver) CleanUp(context.Context, acme.Challenge) error { return nil }

// issued is a certificate the test CA issued, as another library would
// have kept it.
type issued struct {
	chainPEM []byte
	key      crypto.Signer
	leaf     *x509.Certificate
	account  string
}

type fixture struct {
	ca     *testpebble.CA
	client *acme.Client
}

func newFixture(t *testing.T) *fixture {
	ca := testsetup.CA(t, testpebble.Options{AlwaysValid: true})
	return &fixture{ca: ca, client: testsetup.Registered(t, ca)}
}

func (f *fixture) obtain(t *testing.T, key crypto.Signer, names ...string) issued {
	t.Helper()
	s := map[string]acme.Solver{acme.ChallengeHTTP01: nopSolver{}, acme.ChallengeDNS01: nopSolver{}}
	cert, err := f.client.Obtain(ctxT(t), acme.ObtainRequest{Identifiers: acme.DNSNames(names...), CertKey: key, Solvers: s})
	if err != nil {
		t.Fatal(err)
	}
	return issued{chainPEM: cert.Chain.PEM, key: key, leaf: cert.Leaf(), account: f.client.AccountURL}
}

// autocertFile is autocert's cache value: the key (SEC 1 for ECDSA, PKCS#1
// for RSA), then the chain.
func autocertFile(t *testing.T, c issued) []byte {
	t.Helper()
	var b []byte
	switch k := c.key.(type) {
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		b = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	case *rsa.PrivateKey:
		b = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	}
	return append(b, c.chainPEM...)
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func expiredCert(t *testing.T, name string) issued {
	c := testsetup.SelfSigned(t, &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	return issued{chainPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Leaf.Raw}), key: c.PrivateKey.(crypto.Signer), leaf: c.Leaf}
}

// servedWithoutOrders checks that a Manager over store serves each name's
// expected certificate without placing an order.
func (f *fixture) servedWithoutOrders(t *testing.T, store storage.Storage, want map[string]*x509.Certificate) {
	t.Helper()
	var names []string
	for n := range want {
		names = append(names, n)
	}
	orders := f.ca.Requests("newOrder")
	m := testsetup.Manager(t, f.ca, store, nil, names...)
	for name, leaf := range want {
		sni := name
		if strings.HasPrefix(name, "*.") {
			// A wildcard is served once managed: the Manager loads it
			// from storage (a handshake looks up its exact name only).
			if err := m.Manage(ctxT(t), name); err != nil {
				t.Errorf("Manage(%s): %v", name, err)
			}
			sni = "any" + name[1:]
		}
		got, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: sni, SupportedProtos: []string{"http/1.1"}})
		if err != nil {
			t.Errorf("GetCertificate(%s): %v", sni, err)
			continue
		}
		if got.Leaf.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
			t.Errorf("%s: served serial %x, want the imported %x", name, got.Leaf.SerialNumber, leaf.SerialNumber)
		}
	}
	if n := f.ca.Requests("newOrder") - orders; n != 0 {
		t.Errorf("the Manager placed %d orders, want 0", n)
	}
}

func names(items []migrate.Item) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.Source+"="+it.Name)
	}
	slices.Sort(out)
	return out
}

func TestAutocert(t *testing.T) {
	f := newFixture(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	a := f.obtain(t, ecKey(t), "a.example.com")
	b := f.obtain(t, rsaKey, "b.example.com")
	both := f.obtain(t, ecKey(t), "c.example.com")
	bothRSA := f.obtain(t, rsaKey, "c.example.com")

	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.example.com"), autocertFile(t, a))
	write(t, filepath.Join(dir, "b.example.com+rsa"), autocertFile(t, b))
	write(t, filepath.Join(dir, "c.example.com"), autocertFile(t, both))
	write(t, filepath.Join(dir, "c.example.com+rsa"), autocertFile(t, bothRSA))
	write(t, filepath.Join(dir, "acme_account+key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte("x")}))
	write(t, filepath.Join(dir, "tok3n+http-01"), []byte("tok3n.thumb"))
	write(t, filepath.Join(dir, "a.example.com+token"), autocertFile(t, a))
	write(t, filepath.Join(dir, "old.example.com"), autocertFile(t, expiredCert(t, "old.example.com")))
	write(t, filepath.Join(dir, "junk.example.com"), []byte("not PEM at all"))
	mismatch := autocertFile(t, issued{key: ecKey(t), chainPEM: a.chainPEM})
	write(t, filepath.Join(dir, "mismatch.example.com"), mismatch)
	write(t, filepath.Join(dir, "d.example.com"), autocertFile(t, a)) // a's certificate under another name
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "escape.example.com")); err != nil {
		t.Fatal(err)
	}

	store := storage.Dir(t.TempDir())
	rep, err := migrate.Autocert(ctxT(t), dir, store, migrate.Options{Directory: f.ca.DirectoryURL()})
	if err != nil {
		t.Fatal(err)
	}
	got := names(rep.Imported)
	want := []string{"a.example.com=a.example.com", "b.example.com+rsa=b.example.com", "c.example.com=c.example.com"}
	if bothRSA.leaf.NotAfter.After(both.leaf.NotAfter) {
		want = append(want, "c.example.com+rsa=c.example.com") // the later one replaces it
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("imported %v, want %v", got, want)
	}
	reasons := map[string]string{}
	for _, s := range rep.Skipped {
		reasons[s.Source] = s.Reason
	}
	for src, frag := range map[string]string{
		"acme_account+key":     "account key",
		"tok3n+http-01":        "http-01",
		"a.example.com+token":  "tls-alpn-01",
		"old.example.com":      "expired",
		"junk.example.com":     "no certificate",
		"mismatch.example.com": "does not match",
		"d.example.com":        "does not cover",
		"escape.example.com":   "unreadable",
	} {
		if !strings.Contains(reasons[src], frag) {
			t.Errorf("%s: skipped with %q, want a reason with %q", src, reasons[src], frag)
		}
	}
	f.servedWithoutOrders(t, store, map[string]*x509.Certificate{"a.example.com": a.leaf, "b.example.com": b.leaf})

	// Again: everything is already stored.
	rep, err = migrate.Autocert(ctxT(t), dir, store, migrate.Options{Directory: f.ca.DirectoryURL()})
	if err != nil || len(rep.Imported) != 0 {
		t.Errorf("second import: %v, %v; want nothing imported", names(rep.Imported), err)
	}

	if _, err := migrate.Autocert(ctxT(t), filepath.Join(dir, "missing"), store, migrate.Options{}); !errors.Is(err, migrate.ErrSource) {
		t.Errorf("missing folder: %v, want ErrSource", err)
	}
}

// certmagicIssuerKey is certmagic's issuer folder name for a directory:
// host and path, slashes as hyphens, then only word characters, '@', '.'
// and '-' kept (':' of a port becomes '-').
func certmagicIssuerKey(dir string) string {
	u, _ := url.Parse(dir)
	key := u.Host
	if p := strings.Trim(strings.ReplaceAll(u.Path, "/", "-"), "-"); p != "" {
		key += "-" + p
	}
	return certmagicSafe(key)
}

func certmagicSafe(s string) string {
	s = strings.NewReplacer(" ", "_", "+", "_plus_", "*", "wildcard_", ":", "-", "..", "").Replace(strings.ToLower(s))
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '@' || r == '.' || r == '-' {
			return r
		}
		return -1
	}, s)
}

// certmagicSite writes one site as certmagic's FileStorage keeps it.
func certmagicSite(t *testing.T, root, issuerKey string, c issued, meta map[string]any) {
	t.Helper()
	sans := leafDNSNames(c.leaf)
	site := certmagicSafe(strings.Join(sans, ","))
	folder := filepath.Join(root, "certificates", issuerKey, site)
	der, err := x509.MarshalECPrivateKey(c.key.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(folder, site+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	write(t, filepath.Join(folder, site+".crt"), c.chainPEM)
	if meta != nil {
		b, _ := json.MarshalIndent(meta, "", "\t")
		write(t, filepath.Join(folder, site+".json"), b)
	}
}

func leafDNSNames(l *x509.Certificate) []string {
	n := slices.Clone(l.DNSNames)
	slices.Sort(n)
	return n
}

func TestCertmagic(t *testing.T) {
	f := newFixture(t)
	root := t.TempDir()
	iss := certmagicIssuerKey(f.ca.DirectoryURL())
	one := f.obtain(t, ecKey(t), "one.example.com")
	wild := f.obtain(t, ecKey(t), "*.example.net")
	nometa := f.obtain(t, ecKey(t), "plain.example.com")
	unknown := f.obtain(t, ecKey(t), "unknown.example.com")

	acmeMeta := func(c issued) map[string]any {
		return map[string]any{"sans": leafDNSNames(c.leaf), "issuer_data": map[string]any{
			"url": "https://ca.example/cert/1", "ca": f.ca.DirectoryURL(), "account": c.account}}
	}
	certmagicSite(t, root, iss, one, acmeMeta(one))
	certmagicSite(t, root, iss, wild, acmeMeta(wild))
	certmagicSite(t, root, iss, nometa, nil)                        // names from the certificate; CA unknown by folder name
	certmagicSite(t, root, "ca.unknown.example-acme", unknown, nil) // no metadata, unknown issuer folder
	write(t, filepath.Join(root, "acme", iss, "users", "ops@example.com", "ops.key"), []byte("account"))
	write(t, filepath.Join(root, "certificates", iss, "broken", "broken.crt"), []byte("junk"))

	store := storage.NewMemory()
	rep, err := migrate.Certmagic(ctxT(t), root, store, migrate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := names(rep.Imported)
	want := []string{
		"certificates/" + iss + "/one.example.com=one.example.com",
		"certificates/" + iss + "/wildcard_.example.net=*.example.net",
	}
	if !slices.Equal(got, want) {
		t.Errorf("imported %v, want %v", got, want)
	}
	reasons := map[string]string{}
	for _, s := range rep.Skipped {
		reasons[s.Source] = s.Reason
	}
	for src, frag := range map[string]string{
		"certificates/" + iss + "/plain.example.com":               "unknown CA",
		"certificates/ca.unknown.example-acme/unknown.example.com": "unknown CA",
	} {
		if !strings.Contains(reasons[src], frag) {
			t.Errorf("%s: skipped with %q, want a reason with %q", src, reasons[src], frag)
		}
	}
	f.servedWithoutOrders(t, store, map[string]*x509.Certificate{"one.example.com": one.leaf, "*.example.net": wild.leaf})

	// With the directory given, the sites without metadata are imported too.
	rep, err = migrate.Certmagic(ctxT(t), root, store, migrate.Options{Directory: f.ca.DirectoryURL()})
	if err != nil {
		t.Fatal(err)
	}
	for _, sk := range rep.Skipped {
		if sk.Source == "certificates/"+iss+"/broken" && !strings.Contains(sk.Reason, "no private key") {
			t.Errorf("broken: skipped with %q, want no private key", sk.Reason)
		}
	}
	if got := names(rep.Imported); len(got) != 2 || !strings.HasSuffix(got[0], "=plain.example.com") || !strings.HasSuffix(got[1], "=unknown.example.com") {
		t.Errorf("with Directory: imported %v", got)
	}
	if _, err := migrate.Certmagic(ctxT(t), t.TempDir(), store, migrate.Options{}); !errors.Is(err, migrate.ErrSource) {
		t.Errorf("a folder without certificates: %v, want ErrSource", err)
	}
}

// failingStore is a storage whose Store fails.
type failingStore struct{ storage.Storage }

var errDiskFull = errors.New("disk full")

func (failingStore) Store(context.Context, string, []byte) error { return errDiskFull }

// A certificate that could not be stored is a failure, not a skip.
func TestAutocertStoreFails(t *testing.T) {
	f := newFixture(t)
	a := f.obtain(t, ecKey(t), "a.example.com")
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.example.com"), autocertFile(t, a))
	write(t, filepath.Join(dir, "junk.example.com"), []byte("not PEM at all"))
	rep, err := migrate.Autocert(ctxT(t), dir, failingStore{storage.NewMemory()}, migrate.Options{Directory: f.ca.DirectoryURL()})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(rep.Failed); !slices.Equal(got, []string{"a.example.com=a.example.com"}) || !strings.Contains(rep.Failed[0].Reason, "disk full") {
		t.Errorf("failed %v (%+v), want a.example.com with the storage's error", got, rep.Failed)
	}
	if got := names(rep.Skipped); !slices.Equal(got, []string{"junk.example.com="}) {
		t.Errorf("skipped %v, want only the junk file", got)
	}
	if len(rep.Imported) != 0 {
		t.Errorf("imported %v, want none", names(rep.Imported))
	}
}
