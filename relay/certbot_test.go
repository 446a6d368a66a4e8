package relay_test

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tlsmint/tlsmint/internal/testenv"
	"github.com/tlsmint/tlsmint/relay"
)

// TestCertbot runs Debian's certbot (when the machine has it; .ci/run
// installs it) through the relay: registration with EAB, certonly via
// http-01 (certbot's standalone server) validated by the relay, a forced
// renewal, revocation reaching Pebble, and a name outside the tenant's
// policy refused.
func TestCertbot(t *testing.T) {
	bin := testenv.Command(t, "certbot", "certbot", "no certbot on PATH (Debian's certbot package; .ci/run installs it)")
	t.Parallel()
	port := freePort(t)
	e := newEnv(t, envOptions{modify: func(s *relay.Server) { s.Validator.HTTPPort = port }})
	eab := e.tenant(t, "certbot", examplePolicy())
	dir := t.TempDir()
	bundle := filepath.Join(dir, "relay-ca.pem")
	if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		t.Helper()
		base := []string{"--non-interactive", "--server", e.dirURL(),
			"--config-dir", filepath.Join(dir, "config"), "--work-dir", filepath.Join(dir, "work"), "--logs-dir", filepath.Join(dir, "logs")}
		cmd := exec.CommandContext(ctxT(t), bin, append(args, base...)...)
		cmd.Env = append(os.Environ(), "REQUESTS_CA_BUNDLE="+bundle, "HOME="+dir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// "=": a base64url key (or key ID) may start with "-", which certbot
	// would take for an option (one run in 64 failed so).
	if out, err := run("register", "--agree-tos", "-m", "certbot@example.com", "--eab-kid="+eab.KeyID, "--eab-hmac-key="+b64.EncodeToString(eab.HMACKey)); err != nil {
		t.Fatalf("certbot register: %v\n%s", err, out)
	}
	obtain := []string{"certonly", "--standalone", "--http-01-address", "127.0.0.1", "--http-01-port", strconv.Itoa(port), "--key-type", "ecdsa", "-d", "certbot.example.com"}
	if out, err := run(obtain...); err != nil {
		t.Fatalf("certbot certonly: %v\n%s", err, out)
	}
	certPath := filepath.Join(dir, "config", "live", "certbot.example.com", "cert.pem")
	first := readLeaf(t, certPath)
	chain, err := os.ReadFile(filepath.Join(dir, "config", "live", "certbot.example.com", "fullchain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	opts := verifyOpts(e.ca, nil, "certbot.example.com")
	opts.Intermediates = poolOf(t, chain)
	if _, err := first.Verify(opts); err != nil {
		t.Fatalf("certbot's certificate does not verify: %v", err)
	}
	if out, err := run("renew", "--force-renewal", "--no-random-sleep-on-renew", "--cert-name", "certbot.example.com"); err != nil {
		t.Fatalf("certbot renew: %v\n%s", err, out)
	}
	renewed := readLeaf(t, certPath)
	if renewed.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("certbot renew kept the same certificate")
	}
	if out, err := run("revoke", "--cert-path", certPath, "--reason", "superseded", "--no-delete-after-revoke"); err != nil {
		t.Fatalf("certbot revoke: %v\n%s", err, out)
	}
	if err := e.ca.Revoke(renewed, 0); err == nil {
		t.Fatal("certbot's revocation did not reach Pebble")
	}
	before := e.ca.Requests("newOrder")
	out, err := run("certonly", "--standalone", "--http-01-address", "127.0.0.1", "--http-01-port", strconv.Itoa(port), "-d", "outside.example.org")
	// Debian's certbot 2.1 on Python 3.11 crashes while printing any ACME
	// error (certbot/certbot#9539, fixed in 2.2): its debug log has the
	// problem it received.
	log, _ := os.ReadFile(filepath.Join(dir, "logs", "letsencrypt.log"))
	if err == nil || !strings.Contains(out+string(log), "urn:ietf:params:acme:error:rejectedIdentifier") {
		t.Fatalf("certbot for a name outside the policy: %v, want rejectedIdentifier in:\n%s", err, out)
	}
	if e.ca.Requests("newOrder") != before {
		t.Fatal("a refused order reached Pebble")
	}
}

func readLeaf(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return firstCert(t, b)
}
