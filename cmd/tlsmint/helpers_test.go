package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
)

// ctxT is testsetup.Context, under the name the tests use.
func ctxT(t testing.TB) context.Context { return testsetup.Context(t) }

// testCA is the in-process test CA with a PEM file of its HTTPS server's
// certificate, for --ca-roots.
type testCA struct {
	*testpebble.CA
	rootsFile string // trusts the CA's HTTPS server
	issuers   string // PEM of the roots issued certificates chain to
}

func newCA(t testing.TB, opts testpebble.Options) *testCA {
	t.Helper()
	ca := testsetup.CA(t, opts)
	u, _ := url.Parse(ca.DirectoryURL())
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	certs := conn.ConnectionState().PeerCertificates
	conn.Close()
	dir := t.TempDir()
	rootsFile := filepath.Join(dir, "ca-https.pem")
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(rootsFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	issuers := filepath.Join(dir, "issuers.pem")
	b = nil
	for _, c := range ca.Roots() {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(issuers, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return &testCA{CA: ca, rootsFile: rootsFile, issuers: issuers}
}

// result is what one run printed.
type result struct {
	code           int
	stdout, stderr string
}

// run runs the command with args after the CA flags.
func (ca *testCA) run(t testing.TB, args ...string) result {
	t.Helper()
	return ca.runEnv(t, nil, args...)
}

// runEnv runs the command with the given environment (only it).
func (ca *testCA) runEnv(t testing.TB, env map[string]string, args ...string) result {
	t.Helper()
	full := append([]string{"--ca", ca.DirectoryURL(), "--ca-roots", ca.rootsFile}, args...)
	return runCmd(t, env, full...)
}

// runCmd runs the command with args as given.
func runCmd(t testing.TB, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	getenv := func(k string) string { return env[k] }
	code := runEnv(ctxT(t), args, strings.NewReader(""), &out, &errb, getenv)
	r := result{code: code, stdout: out.String(), stderr: errb.String()}
	t.Logf("tlsmint %s -> %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, r.stdout, r.stderr)
	return r
}

// ok fails the test unless r succeeded.
func (r result) ok(t testing.TB) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d, want 0; stderr: %s", r.code, r.stderr)
	}
	return r
}

// fails checks r's exit code and that stderr contains every want.
func (r result) fails(t testing.TB, code int, want ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit %d, want %d; stderr: %s", r.code, code, r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr %q does not contain %q", r.stderr, w)
		}
	}
}

// decode decodes r's stdout as JSON into v.
func (r result) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
	}
}

// closedURL returns an https URL on a loopback port that refuses
// connections for the rest of the test.
func closedURL(t testing.TB) string {
	t.Helper()
	return "https://127.0.0.1:" + strconv.Itoa(testpebble.ClosedPort(t)) + "/dir"
}

// noFile fails the test if path exists.
func noFile(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		t.Errorf("%s exists, want nothing written", path)
	}
}

// mode returns path's permission bits.
func mode(t testing.TB, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// onlyFiles lists the names in dir.
func onlyFiles(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}
