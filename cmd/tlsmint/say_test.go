package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/record"
)

// Usage errors: one line, naming the command's --help.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	acct := ca.account(t)
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"no-such-command"}, []string{"unknown command", "; see tlsmint --help"}},
		{[]string{"check"}, []string{"check needs the server to check: HOST or HOST:PORT", "; see tlsmint check --help"}},
		{[]string{"check", "a.example", "b.example"}, []string{"check takes one server"}},
		{[]string{"--account-key", acct, "obtain", "example.com", "--http", "80"}, []string{`--http "80"`, "want HOST:PORT or :PORT", "; see tlsmint obtain --help"}},
		{[]string{"--account-key", acct, "obtain", "example.com", "--tls-alpn", ":99999"}, []string{`--tls-alpn ":99999"`, "not a port number"}},
		{[]string{"--account-key", acct, "obtain", "example.com", "--http", ":80", "--request-timeout", "0s"}, []string{"--request-timeout"}},
		{[]string{"certs", "list", "--color", "pink"}, []string{`--color "pink"`}},
	} {
		r := ca.run(t, tt.args...)
		r.fails(t, exitUsage, tt.want...)
		if strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%v: stderr is not one line: %q", tt.args, r.stderr)
		}
		if strings.Contains(r.stderr, "tlsmint tlsmint") {
			t.Errorf("%v: %q names the command twice", tt.args, r.stderr)
		}
	}
	r := runCmd(t, map[string]string{"TLSMINT_HTTP": "localhost"}, "--ca", ca.DirectoryURL(), "--ca-roots", ca.rootsFile, "--account-key", acct, "obtain", "example.com")
	r.fails(t, exitUsage, `--http "localhost"`)
}

func TestVersion(t *testing.T) {
	t.Parallel()
	r := runCmd(t, nil, "--version").ok(t)
	if !regexp.MustCompile(`^tlsmint \S+.* go1\.\d+`).MatchString(r.stdout) || !strings.Contains(r.stdout, runtime.Version()) {
		t.Errorf("--version printed %q, want tlsmint VERSION … %s", r.stdout, runtime.Version())
	}
}

// hangingCA is an HTTPS server that accepts every request and never
// answers, until the test ends.
func hangingCA(t *testing.T) (directory, rootsFile string) {
	t.Helper()
	stop := make(chan struct{})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(stop); srv.Close() })
	rootsFile = filepath.Join(t.TempDir(), "hang.pem")
	os.WriteFile(rootsFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	return srv.URL + "/dir", rootsFile
}

// A CA that accepts and never answers: progress says whom the command
// waits for, and --request-timeout ends the wait with a message naming it.
func TestCANeverAnswers(t *testing.T) {
	t.Parallel()
	dir, roots := hangingCA(t)
	key := filepath.Join(t.TempDir(), "acct.key")
	start := time.Now()
	r := runCmd(t, nil, "--ca", dir, "--ca-roots", roots, "--account-key", key, "--progress", "--request-timeout", "1s",
		"account", "register", "--accept-tos")
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %s, want about one --request-timeout (1s): a request the CA does not answer is not repeated", took)
	}
	r.fails(t, exitFailure, "did not answer within 1s (--request-timeout)",
		"contacting the CA at "+dir, "still waiting for an answer from the CA at")
	if n := strings.Count(r.stderr, "still waiting"); n != 1 {
		t.Errorf("%d \"still waiting\" lines, want 1 (one request, not repeated)", n)
	}
	noFile(t, key)
}

// The progress of a poll the CA asks to repeat later.
func TestProgressRetryAfter(t *testing.T) {
	var b bytes.Buffer
	p := &progress{w: &b, on: true, start: time.Now()}
	progressObserver{p}.ObserveExchange(acme.Exchange{Operation: acme.OpOrder, Status: 200, RetryAfter: 5 * time.Second})
	progressObserver{p}.ObserveExchange(acme.Exchange{Operation: acme.OpOrder, Status: 200})
	if got := b.String(); strings.Count(got, "\n") != 1 || !strings.Contains(got, "waiting for the CA (Retry-After 5s)") {
		t.Errorf("progress %q, want one line saying the CA's Retry-After", got)
	}
}

// Ctrl-C in-process (the context is cancelled): the message says what
// was written, the exit is 130, and the audit trail has a failed
// decision; a failed obtain has one too.
func TestInterruptedAndFailedObtain(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	acct := ca.account(t)
	store := t.TempDir()

	// A validation that fails.
	ca.run(t, "--account-key", acct, "--storage", store, "obtain", "fail.example.com", "--http", "127.0.0.1:0").
		fails(t, exitFailure, "could not validate")

	// Interrupted while the command waits for the CA.
	dir, roots := hangingCA(t)
	ctx, cancel := context.WithCancel(ctxT(t))
	stderr := &hookWriter{at: "contacting the CA", fn: func() { time.AfterFunc(100*time.Millisecond, cancel) }}
	var stdout bytes.Buffer
	code := runEnv(ctx, []string{"--ca", dir, "--ca-roots", roots, "--account-key", acct, "--progress", "--storage", store,
		"obtain", "stop.example.com", "--http", ca.httpAddr()}, strings.NewReader(""), &stdout, stderr, func(string) string { return "" })
	msg := stderr.buf.String()
	if code != exitInterrupted || !strings.HasSuffix(msg, "tlsmint: interrupted; nothing was written\n") {
		t.Errorf("exit %d, stderr %q; want 130 and \"interrupted; nothing was written\"", code, msg)
	}

	var recs []record.Audit
	runCmd(t, nil, "audit", "--storage", store, "--outcome", "failure", "--kind", "decision", "--json").ok(t).decode(t, &recs)
	got := map[string]string{}
	for _, rec := range recs {
		got[strings.Join(rec.Names, ",")] = rec.Detail
	}
	if !strings.Contains(got["fail.example.com"], "http-01") {
		t.Errorf("failed obtain: decision %q, want the validation error", got["fail.example.com"])
	}
	if !strings.HasPrefix(got["stop.example.com"], "interrupted") {
		t.Errorf("interrupted obtain: decision %q, want one that says interrupted", got["stop.example.com"])
	}
}

// buildCommand builds the tlsmint binary for the tests that need a
// process of its own (signals, exit codes from main).
var buildCommand = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "tlsmint-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "tlsmint")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", &exec.Error{Name: "go build: " + string(out), Err: err}
	}
	return bin, nil
})

// The built binary, interrupted by SIGINT while a CA does not answer:
// "interrupted; nothing was written", exit 130.
func TestSIGINT(t *testing.T) {
	t.Parallel()
	bin, err := buildCommand()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(bin)) })
	dir, roots := hangingCA(t)
	tmp := t.TempDir()
	crt := filepath.Join(tmp, "x.crt")
	cmd := exec.Command(bin, "--ca", dir, "--ca-roots", roots, "--account-key", filepath.Join(tmp, "acct.key"), "--progress",
		"account", "register", "--accept-tos")
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if strings.Contains(sc.Text(), "contacting the CA") {
			time.Sleep(100 * time.Millisecond) // the request is on its way
			cmd.Process.Signal(syscall.SIGINT)
		}
	}
	err = cmd.Wait()
	t.Logf("stderr:\n%s", strings.Join(lines, "\n"))
	if code := cmd.ProcessState.ExitCode(); code != exitInterrupted {
		t.Errorf("exit %d (%v), want 130", code, err)
	}
	if len(lines) == 0 || lines[len(lines)-1] != "tlsmint: interrupted; nothing was written" {
		t.Errorf("last line %q, want \"tlsmint: interrupted; nothing was written\"", lines)
	}
	noFile(t, crt)
	noFile(t, filepath.Join(tmp, "acct.key"))
}

// noCN is a certificate for name with no common name, as Let's Encrypt's
// newer profiles issue.
func noCN(t *testing.T, name string) tls.Certificate {
	t.Helper()
	return testsetup.SelfSigned(t, &x509.Certificate{SerialNumber: big.NewInt(9), DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90*24*time.Hour + time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
}

// check's text: durations as people write them, a certificate without a
// common name by its first name, latency in the JSON; colour only when
// asked for or on a terminal without NO_COLOR.
func TestCheckSays(t *testing.T) {
	t.Parallel()
	addr := testsetup.ServeCertificate(t, noCN(t, "nocn.example.com"))
	var out checkOutput
	r := runCmd(t, nil, "check", addr, "--sni", "nocn.example.com", "--json")
	r.decode(t, &out)
	if len(out.Chain) != 1 || out.Chain[0] != "nocn.example.com" || out.Left != "90d" {
		t.Errorf("chain %q, left %q; want the first name and 90d", out.Chain, out.Left)
	}
	if !strings.Contains(r.stdout, `"latency_ms": `) {
		t.Errorf("no latency_ms in %s", r.stdout)
	}
	plain := runCmd(t, nil, "check", addr, "--sni", "nocn.example.com", "--warn", "100d").stdout
	for _, want := range []string{"(in 90d)", "chain:    nocn.example.com", "threshold 100d)"} {
		if !strings.Contains(plain, want) {
			t.Errorf("check text lacks %q:\n%s", want, plain)
		}
	}
	if strings.Contains(plain, "\x1b") {
		t.Errorf("colour on a non-terminal:\n%q", plain)
	}
	colored := runCmd(t, nil, "--color", "always", "check", addr, "--sni", "nocn.example.com", "--warn", "100d").stdout
	if !strings.HasPrefix(colored, sgrRed+"PROBLEM"+sgrReset+":") {
		t.Errorf("--color always: %q, want PROBLEM in red", colored)
	}
	if stripSGR(colored) != plain {
		t.Errorf("colour changed the text:\n%q\nwant\n%q", stripSGR(colored), plain)
	}
}

var sgr = regexp.MustCompile("\x1b\\[[0-9;]*m")

func stripSGR(s string) string { return sgr.ReplaceAllString(s, "") }

func TestColorColumn(t *testing.T) {
	table := "NAME      STATE     LEFT\n" +
		"ok.test   ok        89d\n" +
		"bad.test  expired   -2d\n" +
		"ünï.test  failing   3d\n" +
		"odd.test  unknown   1d\n"
	got := colorColumn(table, "STATE")
	want := "NAME      STATE     LEFT\n" +
		"ok.test   " + sgrGreen + "ok" + sgrReset + "        89d\n" +
		"bad.test  " + sgrRed + "expired" + sgrReset + "   -2d\n" +
		"ünï.test  " + sgrRed + "failing" + sgrReset + "   3d\n" +
		"odd.test  unknown   1d\n"
	if got != want {
		t.Errorf("colorColumn:\n%q\nwant\n%q", got, want)
	}
	a := &app{color: "auto", stdout: &bytes.Buffer{}, getenv: func(string) string { return "" }}
	if a.colorOn() {
		t.Errorf("auto colours a buffer")
	}
	a.color = "always"
	if !a.colorOn() {
		t.Errorf("always does not colour")
	}
}

// What an interrupted run says it left behind.
func TestWrittenSummary(t *testing.T) {
	a := &app{}
	if got := a.writtenSummary(); got != "nothing was written" {
		t.Errorf("nothing written: %q", got)
	}
	a.wrote("a.crt")
	a.wrote("example.com in the storage")
	if got := a.writtenSummary(); got != "written before it stopped: a.crt, example.com in the storage" {
		t.Errorf("written: %q", got)
	}
}
