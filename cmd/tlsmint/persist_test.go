package main

import (
	"bytes"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// persistCatcher is the operator of a manual dns-persist-01: it reads the
// record the command prints on stderr and, when publish is set, creates
// it in the CA's DNS server.
type persistCatcher struct {
	ca      *testCA
	publish bool

	mu      sync.Mutex
	buf     bytes.Buffer
	records [][3]string // name, value, zone file line as printed
}

var (
	persistLine  = regexp.MustCompile(`(?m)^(_validation-persist\.[^ ]+)\. IN TXT "([^"]+)"$`)
	persistName  = regexp.MustCompile(`(?m)^  name:  (.+)$`)
	persistValue = regexp.MustCompile(`(?m)^  value: (.+)$`)
)

func (c *persistCatcher) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	s := string(p)
	if m := persistLine.FindStringSubmatch(s); m != nil {
		name, value := persistName.FindStringSubmatch(s), persistValue.FindStringSubmatch(s)
		if name == nil || value == nil || name[1] != m[1] || value[1] != m[2] {
			c.records = append(c.records, [3]string{"name/value lines missing or different", "", m[0]})
		} else {
			c.records = append(c.records, [3]string{m[1], m[2], m[0]})
		}
		if c.publish {
			c.ca.DNS().AddTXT(m[1], m[2])
		}
	}
	return len(p), nil
}

func (c *persistCatcher) printed() ([][3]string, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.records), c.buf.String()
}

// persistRun runs obtain with --dns-persist over the CA's DNS server,
// stderr going to c.
func (ca *testCA) persistRun(t *testing.T, c *persistCatcher, acct string, args ...string) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(ca.DNS().Addr())
	full := append([]string{"--ca", ca.DirectoryURL(), "--ca-roots", ca.rootsFile, "--account-key", acct, "--progress",
		"obtain", "--dns-persist", "--dns-resolver", ca.DNS().Addr(), "--dns-port", port}, args...)
	var stdout bytes.Buffer
	code := runEnv(ctxT(t), full, strings.NewReader(""), &stdout, c, func(string) string { return "" })
	_, stderr := c.printed()
	t.Logf("tlsmint %s -> %d\nstdout:\n%s\nstderr:\n%s", strings.Join(full, " "), code, stdout.String(), stderr)
	return code
}

// persistCA starts a test CA whose DNS serves the zone persist.example
// and returns it with the file of a registered account key and that
// account's URL.
func persistCA(t *testing.T) (*testCA, string, string) {
	t.Helper()
	ca := newCA(t, testpebble.Options{})
	acct := ca.account(t)
	var info accountOutput
	ca.run(t, "--account-key", acct, "--json", "account", "show").ok(t).decode(t, &info)
	ca.DNS().AddZone("persist.example")
	return ca, acct, info.URL
}

// TestObtainManualDNSPersist01: obtain --dns-persist prints the one
// record a name and its wildcard need (the CA's issuer domain name, the
// account URI, policy=wildcard), waits until the CA's nameserver answers
// it, lets the CA validate and never deletes it; a second order reuses
// it with nothing printed.
func TestObtainManualDNSPersist01(t *testing.T) {
	t.Parallel()
	ca, acct, accountURL := persistCA(t)
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "p.crt"), filepath.Join(dir, "p.key")

	c := &persistCatcher{ca: ca, publish: true}
	if code := ca.persistRun(t, c, acct, "*.persist.example", "persist.example", "--dns-timeout", "1m", "--cert", crt, "--key", key); code != 0 {
		t.Fatalf("exit %d", code)
	}
	recs, stderr := c.printed()
	wantName := "_validation-persist.persist.example"
	wantValue := "pebble.letsencrypt.org; accounturi=" + accountURL + "; policy=wildcard"
	want := [3]string{wantName, wantValue, wantName + `. IN TXT "` + wantValue + `"`}
	if len(recs) != 1 || recs[0] != want {
		t.Errorf("records printed %q, want once %q (one record serves the name and its wildcard)", recs, want)
	}
	ca.loadPair(t, crt, key, "persist.example", "x.persist.example")
	for _, s := range []string{"validating persist.example via dns-persist-01", "visible at every authoritative nameserver", "Keep the TXT record"} {
		if !strings.Contains(stderr, s) {
			t.Errorf("stderr lacks %q", s)
		}
	}
	if strings.Contains(stderr, "may be deleted") {
		t.Errorf("stderr says the record may be deleted")
	}
	if got := ca.DNS().TXT(wantName); !slices.Equal(got, []string{wantValue}) {
		t.Errorf("the CA's DNS holds %q at %s, want the record kept", got, wantName)
	}

	// The record is there: a new order for the name reuses it, printing
	// and waiting for nothing.
	c2 := &persistCatcher{ca: ca}
	crt2, key2 := filepath.Join(dir, "p2.crt"), filepath.Join(dir, "p2.key")
	if code := ca.persistRun(t, c2, acct, "persist.example", "--dns-timeout", "1s", "--cert", crt2, "--key", key2); code != 0 {
		t.Fatalf("second order: exit %d", code)
	}
	recs, stderr = c2.printed()
	if len(recs) != 0 || strings.Contains(stderr, "Create this TXT record") || strings.Contains(stderr, "Keep the TXT record") {
		t.Errorf("second order printed records %q:\n%s", recs, stderr)
	}
	if !strings.Contains(stderr, "the dns-persist-01 record of persist.example is published") {
		t.Errorf("second order does not say the record is published:\n%s", stderr)
	}
	ca.loadPair(t, crt2, key2, "persist.example")
}

// TestObtainManualDNSPersist01Timeout: the record is never published —
// the wait ends after --dns-timeout with the record in the message, exit
// 1, no challenge submitted to the CA and no file written.
func TestObtainManualDNSPersist01Timeout(t *testing.T) {
	t.Parallel()
	ca, acct, accountURL := persistCA(t)
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "n.crt"), filepath.Join(dir, "n.key")

	ca.run(t, "--account-key", acct, "obtain", "never.persist.example", "--http", ca.httpAddr(), "--wildcard-policy", "--cert", crt).
		fails(t, exitUsage, "--wildcard-policy", "--dns-persist")

	challenges := ca.Requests("challenge")
	c := &persistCatcher{ca: ca}
	code := ca.persistRun(t, c, acct, "never.persist.example", "--wildcard-policy", "--dns-timeout", "1s", "--cert", crt, "--key", key)
	recs, stderr := c.printed()
	if code != exitFailure {
		t.Errorf("exit %d, want %d", code, exitFailure)
	}
	wantName := "_validation-persist.never.persist.example"
	wantValue := "pebble.letsencrypt.org; accounturi=" + accountURL + "; policy=wildcard"
	if len(recs) != 1 || recs[0][0] != wantName || recs[0][1] != wantValue {
		t.Errorf("records printed %q, want %s %q (--wildcard-policy)", recs, wantName, wantValue)
	}
	for _, s := range []string{"tlsmint: obtaining the certificate", "is not answered by every authoritative nameserver", wantName + `. IN TXT "` + wantValue + `"`, "after 1s", "--dns-timeout"} {
		if !strings.Contains(stderr, s) {
			t.Errorf("stderr lacks %q", s)
		}
	}
	if strings.Contains(stderr, "cannot reach the CA") {
		t.Errorf("the DNS wait is reported as the CA being unreachable")
	}
	if n := ca.Requests("challenge"); n != challenges {
		t.Errorf("%d challenges submitted, want none before the record is visible", n-challenges)
	}
	noFile(t, crt)
	noFile(t, key)
}
