package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// account registers an account with a fresh key file and returns its
// path.
func (ca *testCA) account(t testing.TB) string {
	t.Helper()
	key := filepath.Join(t.TempDir(), "account.key")
	ca.run(t, "--account-key", key, "account", "register", "--accept-tos").ok(t)
	return key
}

// obtained registers an account and obtains a certificate for name over
// http-01 into a fresh folder; it returns the account key's file and the
// certificate's and key's files.
func (ca *testCA) obtained(t testing.TB, name string) (acct, crt, key string) {
	t.Helper()
	acct = ca.account(t)
	dir := t.TempDir()
	crt, key = filepath.Join(dir, "cert.crt"), filepath.Join(dir, "cert.key") // renew's default --key: --cert with .key for .crt
	ca.run(t, "--account-key", acct, "obtain", name, "--http", ca.httpAddr(), "--cert", crt, "--key", key).ok(t)
	return acct, crt, key
}

func (ca *testCA) httpAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(ca.HTTPPort()))
}
func (ca *testCA) tlsAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(ca.TLSPort())) }

// loadPair loads and verifies a certificate and key written by the
// command: the key matches, the chain verifies for every name.
func (ca *testCA) loadPair(t testing.TB, certFile, keyFile string, names ...string) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("loading the written pair: %v", err)
	}
	leaf := pair.Leaf
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		c, _ := x509.ParseCertificate(der)
		inter.AddCert(c)
	}
	for _, n := range names {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: n, Roots: ca.RootPool(), Intermediates: inter}); err != nil {
			t.Errorf("the chain does not verify for %s: %v", n, err)
		}
	}
	if m := mode(t, keyFile); m != 0o600 {
		t.Errorf("key file mode %04o, want 0600", m)
	}
	return leaf
}

func TestObtainHTTP01AndTLSALPN01(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	acct := ca.account(t)
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "ex.crt"), filepath.Join(dir, "ex.key")

	r := ca.run(t, "--account-key", acct, "--json", "--progress", "obtain", "example.com", "www.example.com",
		"--http", ca.httpAddr(), "--cert", crt, "--key", key).ok(t)
	var out certOutput
	r.decode(t, &out)
	if !slices.Equal(out.Names, []string{"example.com", "www.example.com"}) || out.CertFile != crt || out.KeyFile != key || out.Serial == "" {
		t.Errorf("obtain printed %+v", out)
	}
	leaf := ca.loadPair(t, crt, key, "example.com", "www.example.com")
	if out.NotAfter.Unix() != leaf.NotAfter.Unix() {
		t.Errorf("printed not_after %v, file's %v", out.NotAfter, leaf.NotAfter)
	}
	for _, step := range []string{"order created", "validating example.com via http-01", "validating www.example.com via http-01", "CSR submitted", "certificate downloaded"} {
		if !strings.Contains(r.stderr, step) {
			t.Errorf("progress lacks %q:\n%s", step, r.stderr)
		}
	}
	if leftovers := onlyFiles(t, dir); !slices.Equal(leftovers, []string{"ex.crt", "ex.key"}) {
		t.Errorf("folder holds %v", leftovers)
	}

	// tls-alpn-01, a P-384 key, default file names in the working folder
	// would be NAME.crt: use explicit ones; -v shows the exchanges and no
	// progress is printed without --progress.
	crt2, key2 := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	r = ca.run(t, "--account-key", acct, "-v", "obtain", "tls.example.com", "--tls-alpn", ca.tlsAddr(), "--key-type", "p384", "--cert", crt2, "--key", key2).ok(t)
	leaf2 := ca.loadPair(t, crt2, key2, "tls.example.com")
	if k, ok := leaf2.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P384() {
		t.Errorf("key type %T, want P-384", leaf2.PublicKey)
	}
	if !strings.Contains(r.stderr, "acme: newOrder [tls.example.com] -> 201") || !strings.Contains(r.stderr, "acme: finalize") {
		t.Errorf("-v does not show the exchanges:\n%s", r.stderr)
	}
	if strings.Contains(r.stderr, "order created") {
		t.Errorf("progress printed without --progress (stderr is not a terminal)")
	}
	if !strings.Contains(r.stdout, "tls.example.com") || !strings.Contains(r.stdout, crt2) {
		t.Errorf("text output:\n%s", r.stdout)
	}
}

// txtCatcher is the operator of a manual dns-01: it reads the record the
// command prints and creates it in the CA's DNS server.
type txtCatcher struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ca    *testCA
	added []string
}

var zoneLine = regexp.MustCompile(`(?m)^(_acme-challenge\.[^ ]+)\. (\d+) IN TXT "([^"]+)"$`)

func (c *txtCatcher) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	if strings.Contains(string(p), "Create this TXT record") {
		for _, m := range zoneLine.FindAllStringSubmatch(string(p), -1) {
			c.ca.DNS().AddTXT(m[1], m[3])
			c.added = append(c.added, m[1])
		}
	}
	return len(p), nil
}

func TestObtainManualDNS01(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	acct := ca.account(t)
	ca.DNS().AddZone("dns.example")
	_, port, _ := net.SplitHostPort(ca.DNS().Addr())
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "w.crt"), filepath.Join(dir, "w.key")

	catcher := &txtCatcher{ca: ca}
	args := []string{"--ca", ca.DirectoryURL(), "--ca-roots", ca.rootsFile, "--account-key", acct,
		"obtain", "*.dns.example", "dns.example", "--dns", "--dns-resolver", ca.DNS().Addr(), "--dns-port", port,
		"--dns-timeout", "30s", "--cert", crt, "--key", key}
	var stdout bytes.Buffer
	code := runEnv(ctxT(t), args, strings.NewReader(""), &stdout, catcher, func(string) string { return "" })
	t.Logf("stderr:\n%s", catcher.buf.String())
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if len(catcher.added) != 2 {
		t.Errorf("records printed for %v, want two (the name and its wildcard)", catcher.added)
	}
	if !strings.Contains(catcher.buf.String(), "may be deleted") {
		t.Errorf("no clean-up instruction printed")
	}
	ca.loadPair(t, crt, key, "dns.example", "x.dns.example")

	// The record never appears: the wait times out and nothing is written.
	var quiet bytes.Buffer
	args = []string{"--ca", ca.DirectoryURL(), "--ca-roots", ca.rootsFile, "--account-key", acct,
		"obtain", "never.dns.example", "--dns", "--dns-resolver", ca.DNS().Addr(), "--dns-port", port,
		"--dns-timeout", "1s", "--cert", filepath.Join(dir, "n.crt"), "--key", filepath.Join(dir, "n.key")}
	code = runEnv(ctxT(t), args, strings.NewReader(""), &stdout, &quiet, func(string) string { return "" })
	if code != exitFailure || !strings.Contains(quiet.String(), "not propagated") {
		t.Errorf("exit %d, stderr %s; want a failure saying the record is not visible", code, quiet.String())
	}
	noFile(t, filepath.Join(dir, "n.crt"))
	noFile(t, filepath.Join(dir, "n.key"))
}

func TestARIRenewRevoke(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	acct, crt, key := ca.obtained(t, "ari.example.com")
	dir := filepath.Dir(crt)
	leaf := ca.loadPair(t, crt, key, "ari.example.com")

	var info ariOutput
	ca.run(t, "--json", "ari", crt).ok(t).decode(t, &info)
	if !info.Offered || info.Due || info.WindowStart.IsZero() || !info.WindowEnd.After(info.WindowStart) || info.ARIID == "" {
		t.Errorf("ari: %+v, want a window ahead", info)
	}
	if r := ca.run(t, "ari", crt).ok(t); !strings.Contains(r.stdout, "renewal window:") || !strings.Contains(r.stdout, "not yet") {
		t.Errorf("ari text:\n%s", r.stdout)
	}

	// Not due: renew says so, exits 0 and leaves the files alone.
	before, _ := os.ReadFile(crt)
	r := ca.run(t, "--account-key", acct, "renew", "--cert", crt, "--http", ca.httpAddr()).ok(t)
	if !strings.Contains(r.stderr, "not due") {
		t.Errorf("renew when not due: %s", r.stderr)
	}
	if after, _ := os.ReadFile(crt); !bytes.Equal(before, after) {
		t.Errorf("renew when not due changed the certificate")
	}

	// The CA moves the window into the past: ari says due, renew renews
	// with replaces.
	past := time.Now().Add(-time.Hour)
	if err := ca.SetRenewalInfo(leaf, past.Add(-time.Hour), past, "https://ca.example/incident"); err != nil {
		t.Fatal(err)
	}
	ca.run(t, "--json", "ari", crt).ok(t).decode(t, &info)
	if !info.Due || info.ExplanationURL != "https://ca.example/incident" {
		t.Errorf("ari after the incident: %+v", info)
	}
	if r := ca.run(t, "ari", crt).ok(t); !strings.Contains(r.stdout, "renew:            now (the CA moved its renewal window (ARI) into the past") ||
		!strings.Contains(r.stdout, "see https://ca.example/incident") {
		t.Errorf("ari text after the incident does not say why renewal is due now:\n%s", r.stdout)
	}
	var out certOutput
	ca.run(t, "--account-key", acct, "--json", "renew", "--cert", crt, "--http", ca.httpAddr()).ok(t).decode(t, &out)
	renewed := ca.loadPair(t, crt, key, "ari.example.com")
	if renewed.SerialNumber.Cmp(leaf.SerialNumber) == 0 || out.Replaced != info.ARIID {
		t.Errorf("renew: serial %x (old %x), replaced %q, want %q", renewed.SerialNumber, leaf.SerialNumber, out.Replaced, info.ARIID)
	}

	// Revoke by the account key; again: already revoked.
	r = ca.run(t, "--account-key", acct, "revoke", crt, "--reason", "superseded").ok(t)
	if !strings.Contains(r.stdout, "revoked ari.example.com") || !strings.Contains(r.stdout, "account key") {
		t.Errorf("revoke printed %s", r.stdout)
	}
	ca.run(t, "--account-key", acct, "revoke", crt).fails(t, exitFailure, "already revoked")

	// Revoke by the certificate's key, with no account; the wrong key is
	// refused before any request.
	crt2, key2 := filepath.Join(dir, "b.crt"), filepath.Join(dir, "b.key")
	ca.run(t, "--account-key", acct, "obtain", "leak.example.com", "--http", ca.httpAddr(), "--cert", crt2, "--key", key2).ok(t)
	ca.run(t, "revoke", crt2, "--key", key, "--reason", "keyCompromise").fails(t, exitUsage, "is not the key of")
	r = ca.run(t, "--account-key", filepath.Join(dir, "none.key"), "revoke", crt2, "--key", key2, "--reason", "keyCompromise").ok(t)
	if !strings.Contains(r.stdout, "certificate key") {
		t.Errorf("revoke by key printed %s", r.stdout)
	}
	ca.run(t, "revoke", crt2, "--reason", "bogus").fails(t, exitUsage, "--reason")
}

func TestObtainBadInput(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	acct := ca.account(t)
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "x.crt"), filepath.Join(dir, "x.key")

	ca.run(t, "--account-key", acct, "obtain", "example.com", "--cert", crt).fails(t, exitUsage, "pass --http :80, --tls-alpn :443, --dns or --dns-persist")
	ca.run(t, "--account-key", acct, "obtain", "exa mple.com", "--http", ca.httpAddr()).fails(t, exitUsage, "not a valid name")
	ca.run(t, "--account-key", acct, "obtain").fails(t, exitUsage, "requires at least 1 arg")

	orders := ca.Requests("newOrder")
	missing := filepath.Join(dir, "no-such-storage")
	ca.run(t, "--account-key", acct, "obtain", "example.com", "--http", ca.httpAddr(), "--storage", missing).
		fails(t, exitUsage, "storage folder "+missing+" does not exist")
	noFile(t, missing)
	if n := ca.Requests("newOrder"); n != orders {
		t.Errorf("%d orders placed with a missing storage", n-orders)
	}

	// The CA cannot reach the http-01 server (it listens elsewhere): a
	// validation failure, nothing written.
	r := ca.run(t, "--account-key", acct, "obtain", "example.com", "--http", "127.0.0.1:0", "--cert", crt, "--key", key)
	r.fails(t, exitFailure, "could not validate example.com via http-01")
	noFile(t, crt)
	noFile(t, key)

	// The challenge port is taken.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ca.run(t, "--account-key", acct, "obtain", "example.com", "--http", l.Addr().String(), "--cert", crt).fails(t, exitFailure, "another server listens there")

	// An unwritable destination is found before anything is ordered.
	ro := filepath.Join(dir, "file-not-folder")
	os.WriteFile(ro, []byte("x"), 0o600)
	orders = ca.Requests("newOrder")
	ca.run(t, "--account-key", acct, "obtain", "example.com", "--http", ca.httpAddr(), "--cert", filepath.Join(ro, "c.crt"), "--key", key).
		fails(t, exitFailure, "cannot write --cert "+filepath.Join(ro, "c.crt"), "is not a folder", "nothing was ordered")
	ca.run(t, "--account-key", acct, "obtain", "example.com", "--http", ca.httpAddr(), "--cert", crt, "--key", dir).
		fails(t, exitFailure, "cannot write --key "+dir, "is a folder", "nothing was ordered")
	ca.run(t, "--account-key", acct, "obtain", "example.com", "--http", ca.httpAddr(), "--storage", brokenStorage(t)).
		fails(t, exitFailure, "cannot write to --storage", "nothing was ordered")
	// A wildcard with only http-01 or tls-alpn-01 is refused, naming the
	// flags it needs.
	ca.run(t, "--account-key", acct, "obtain", "*.example.com", "--http", ca.httpAddr(), "--tls-alpn", ca.tlsAddr(), "--cert", crt).
		fails(t, exitUsage, "*.example.com is a wildcard", "pass --dns or --dns-persist")
	if n := ca.Requests("newOrder"); n != orders {
		t.Errorf("%d orders placed for destinations that cannot be written or a wildcard without DNS", n-orders)
	}
	noFile(t, key)
	noFile(t, crt)

	// CA down.
	down := closedURL(t)
	runCmd(t, nil, "--ca", down, "--ca-roots", ca.rootsFile, "--account-key", acct, "obtain", "example.com", "--http", ca.httpAddr(), "--cert", crt).
		fails(t, exitFailure, "cannot reach the CA")
	noFile(t, crt)
}

// hookWriter calls fn once, the first time what is written contains at.
type hookWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	at   string
	fn   func()
	done bool
}

func (h *hookWriter) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf.Write(p)
	if !h.done && strings.Contains(h.buf.String(), h.at) {
		h.done = true
		h.fn()
	}
	return len(p), nil
}

// A destination that breaks after the checks, while the CA issues: the
// certificate and its key are not lost but saved in a file the error
// names, mode 0600.
func TestObtainRescuesAfterIssuance(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	acct := ca.account(t)
	for _, tt := range []struct {
		name     string
		args     func(dir string) []string
		breakDst func(dir string)
		want     string
	}{
		{"files", func(dir string) []string {
			return []string{"--cert", filepath.Join(dir, "out", "r.crt"), "--key", filepath.Join(dir, "out", "r.key")}
		}, func(dir string) {
			os.RemoveAll(filepath.Join(dir, "out"))
			os.WriteFile(filepath.Join(dir, "out"), []byte("now a file"), 0o600)
		}, "not saved"},
		{"storage", func(dir string) []string { return []string{"--storage", dir} }, func(dir string) {
			// the folder of certificates/ keys (see brokenStorage)
			os.RemoveAll(filepath.Join(dir, "certificates+"))
			os.WriteFile(filepath.Join(dir, "certificates+"), []byte("now a file"), 0o600)
		}, "not stored under rescue-"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			os.Mkdir(filepath.Join(dir, "out"), 0o700)
			name := "rescue-" + tt.name + ".example.com"
			stderr := &hookWriter{at: "CSR submitted", fn: func() { tt.breakDst(dir) }}
			args := append([]string{"--ca", ca.DirectoryURL(), "--ca-roots", ca.rootsFile, "--account-key", acct, "--progress",
				"obtain", name, "--http", ca.httpAddr()}, tt.args(dir)...)
			var stdout bytes.Buffer
			code := runEnv(ctxT(t), args, strings.NewReader(""), &stdout, stderr, func(string) string { return "" })
			msg := stderr.buf.String()
			t.Logf("exit %d, stderr:\n%s", code, msg)
			if code != exitFailure || !strings.Contains(msg, "was issued") || !strings.Contains(msg, tt.want) {
				t.Fatalf("exit %d, want 1 with %q", code, tt.want)
			}
			m := regexp.MustCompile(`saved in (\S+) \(mode 0600\)`).FindStringSubmatch(msg)
			if m == nil {
				t.Fatalf("the error names no rescue file")
			}
			t.Cleanup(func() { os.Remove(m[1]) })
			if got := mode(t, m[1]); got != 0o600 {
				t.Errorf("rescue file mode %04o, want 0600", got)
			}
			b, err := os.ReadFile(m[1])
			if err != nil {
				t.Fatal(err)
			}
			pair, err := tls.X509KeyPair(b, b)
			if err != nil {
				t.Fatalf("the rescue file does not hold a matching chain and key: %v", err)
			}
			inter := x509.NewCertPool()
			for _, der := range pair.Certificate[1:] {
				c, _ := x509.ParseCertificate(der)
				inter.AddCert(c)
			}
			if _, err := pair.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: ca.RootPool(), Intermediates: inter}); err != nil {
				t.Errorf("the rescued chain does not verify for %s: %v", name, err)
			}
		})
	}
}
