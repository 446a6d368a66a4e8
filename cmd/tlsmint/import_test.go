package main

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/migrate"
	"github.com/tlsmint/tlsmint/statuspage"
)

func TestImport(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	acct := ca.account(t)
	dir := t.TempDir()
	obtain := func(name string) (chainPEM, ecKeyPEM []byte) {
		crt, key := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		ca.run(t, "--account-key", acct, "obtain", name, "--http", ca.httpAddr(), "--cert", crt, "--key", key).ok(t)
		pair, err := tls.LoadX509KeyPair(crt, key)
		if err != nil {
			t.Fatal(err)
		}
		der, _ := x509.MarshalECPrivateKey(pair.PrivateKey.(*ecdsa.PrivateKey))
		chainPEM, _ = os.ReadFile(crt)
		return chainPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}

	// autocert's DirCache: key then chain in one file per domain.
	ac := filepath.Join(dir, "autocert")
	os.Mkdir(ac, 0o700)
	chain, key := obtain("auto.example.com")
	os.WriteFile(filepath.Join(ac, "auto.example.com"), append(key, chain...), 0o600)
	os.WriteFile(filepath.Join(ac, "acme_account+key"), key, 0o600)

	// certmagic's file storage.
	cm := filepath.Join(dir, "certmagic")
	u, _ := url.Parse(ca.DirectoryURL())
	site := filepath.Join(cm, "certificates", strings.ReplaceAll(u.Host, ":", "-")+"-dir", "magic.example.com")
	os.MkdirAll(site, 0o700)
	chain, key = obtain("magic.example.com")
	os.WriteFile(filepath.Join(site, "magic.example.com.crt"), chain, 0o600)
	os.WriteFile(filepath.Join(site, "magic.example.com.key"), key, 0o600)
	meta, _ := json.Marshal(map[string]any{"sans": []string{"magic.example.com"}, "issuer_data": map[string]string{"ca": ca.DirectoryURL()}})
	os.WriteFile(filepath.Join(site, "magic.example.com.json"), meta, 0o600)

	store := t.TempDir()
	var rep migrate.Report
	ca.run(t, "--json", "import", "autocert", ac, "--storage", store).ok(t).decode(t, &rep)
	if len(rep.Imported) != 1 || rep.Imported[0].Name != "auto.example.com" || len(rep.Skipped) != 1 || !strings.Contains(rep.Skipped[0].Reason, "account key") {
		t.Errorf("import autocert: %+v", rep)
	}
	r := runCmd(t, nil, "import", "certmagic", cm, "--storage", store).ok(t)
	if !strings.Contains(r.stdout, "imported  magic.example.com") || !strings.Contains(r.stdout, "1 imported, 0 skipped, 0 failed") {
		t.Errorf("import certmagic report:\n%s", r.stdout)
	}
	// Importing again skips what is stored.
	if r := ca.run(t, "import", "autocert", ac, "--storage", store).ok(t); !strings.Contains(r.stdout, "already stored") {
		t.Errorf("second import:\n%s", r.stdout)
	}

	var st statuspage.Status
	runCmd(t, nil, "certs", "list", "--storage", store, "--json").ok(t).decode(t, &st)
	var names []string
	for _, c := range st.Certificates {
		names = append(names, c.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"auto.example.com", "magic.example.com"}) {
		t.Errorf("certs list after the imports: %v", names)
	}

	ca.run(t, "import", "autocert", filepath.Join(dir, "nope"), "--storage", store).fails(t, exitUsage, "cannot read the source folder")
	ca.run(t, "import", "certmagic", ac, "--storage", store).fails(t, exitUsage, "no certificates folder")
	missing := filepath.Join(dir, "no-storage")
	ca.run(t, "import", "autocert", ac, "--storage", missing).fails(t, exitUsage, "does not exist")
	noFile(t, missing)

	// A storage that cannot store certificates (the folder of keys under
	// "certificates/" is a file): the entry is FAILED, the exit 1, with a
	// one-line summary.
	broken := brokenStorage(t)
	r = ca.run(t, "import", "autocert", ac, "--storage", broken)
	r.fails(t, exitFailure, "1 of 1 certificates could not be stored (auto.example.com: storing failed")
	if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("stderr is more than one line: %q", r.stderr)
	}
	if !regexp.MustCompile(`(?m)^FAILED +auto\.example\.com `).MatchString(r.stdout) || !strings.Contains(r.stdout, "0 imported, 1 skipped, 1 failed") {
		t.Errorf("report of the failed import:\n%s", r.stdout)
	}
	var failed migrate.Report
	ca.run(t, "--json", "import", "autocert", ac, "--storage", broken).decode(t, &failed)
	if len(failed.Failed) != 1 || failed.Failed[0].Name != "auto.example.com" {
		t.Errorf("--json report of the failed import: %+v", failed)
	}
}

// brokenStorage returns a storage folder that can be opened and locked
// but cannot store certificates: the folder of the file backend's keys
// under "certificates/" ("certificates+") is a file. Permissions would not
// do: the tests may run as root.
func brokenStorage(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "certificates+"), []byte("not a folder"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}
