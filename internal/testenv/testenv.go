// Package testenv decides what a test does when something it needs from
// the machine is missing — a PostgreSQL server, Chromium, certbot.
//
// Outside CI such a test skips, and [Main] prints one line per skipped
// test when the package's tests end, even without -v (go test shows a
// passing package's output only with -v, so without it the lines go to
// the terminal, /dev/tty, when there is one). In CI — the environment
// variable CI set to true, as .ci/run does — the same test fails instead:
// a missing dependency there is a broken CI machine, not a reason to pass.
//
// The skips of one test binary are recorded in the process, which is the
// unit go test runs; that record is the only state the package keeps.
package testenv

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// PostgresEnv is the environment variable holding the DSN of a disposable
// PostgreSQL server for the tests.
const PostgresEnv = "TLSMINT_TEST_POSTGRES"

// InCI reports whether the tests run in CI: the environment variable CI
// is true (or 1, as strconv.ParseBool reads it).
func InCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// skips records the tests of this process that skipped through Require.
var skips struct {
	mu    sync.Mutex
	lines []string
}

// Require ends tb when ok is false: what is the missing dependency
// ("PostgreSQL", "Chromium", "certbot") and why says how to provide it.
// In CI the test fails; elsewhere it skips, and Main lists it.
func Require(tb testing.TB, what string, ok bool, why string) {
	tb.Helper()
	if ok {
		return
	}
	if InCI() {
		tb.Fatalf("%s is missing and CI is true, so this test fails instead of skipping: %s", what, why)
	}
	skips.mu.Lock()
	skips.lines = append(skips.lines, fmt.Sprintf("%s: no %s: %s", tb.Name(), what, why))
	skips.mu.Unlock()
	touchSkipped(tb.Name()+"\n", true)
	tb.Skipf("no %s: %s (in CI, with CI=true, this test fails instead)", what, why)
}

// Postgres returns the DSN in TLSMINT_TEST_POSTGRES, or ends tb through
// Require when it is not set.
func Postgres(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv(PostgresEnv)
	Require(tb, "PostgreSQL", dsn != "", "set "+PostgresEnv+" to the DSN of a disposable PostgreSQL server "+
		"(for example postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable), or run .ci/run, which starts one")
	return dsn
}

// Command returns the path of the program name on PATH, or ends tb
// through Require (what names the dependency) when there is none.
func Command(tb testing.TB, what, name, why string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	Require(tb, what, err == nil, why)
	return p
}

// File ends tb through Require when path does not exist.
func File(tb testing.TB, what, path, why string) {
	tb.Helper()
	_, err := os.Stat(path)
	Require(tb, what, err == nil, why)
}

// Main runs the tests of m, prints the summary of the tests Require
// skipped and exits with m's code. A package with tests that call Require
// calls it from its TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	summary(code)
	os.Exit(code)
}

// summary prints the recorded skips, one line each: on stdout with -v,
// which go test then shows, else on the terminal when there is one; the
// run is kept out of go test's cache (see skippedFile).
func summary(code int) {
	skips.mu.Lock()
	lines := slices.Clone(skips.lines)
	skips.mu.Unlock()
	if len(lines) == 0 {
		return
	}
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "SKIP %s\n", l)
	}
	text := b.String()
	var w io.Writer = os.Stdout
	if !testing.Verbose() && code == 0 {
		if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
			defer tty.Close()
			w = tty
		}
	}
	fmt.Fprint(w, text)
	touchSkipped(text, false)
}

// skippedFile is the file ".testenv-skipped" at the root of the module
// (git ignores it) that every run that skipped opens (during its tests,
// where go test records the files a test reads) and rewrites when its
// tests end: go test does not cache a run that read a file of the module
// modified within the last two seconds, so the next run says its skips
// again rather than replaying a silent "ok". It is "" outside a module.
func skippedFile() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, ".testenv-skipped")
		}
		up := filepath.Dir(dir)
		if up == dir {
			return ""
		}
		dir = up
	}
}

// touchSkipped writes text to skippedFile, and opens it when read is set.
func touchSkipped(text string, read bool) {
	name := skippedFile()
	if name == "" {
		return
	}
	if err := os.WriteFile(name, []byte(text), 0o600); err != nil {
		return
	}
	if read {
		if r, err := os.Open(name); err == nil {
			r.Close()
		}
	}
}
