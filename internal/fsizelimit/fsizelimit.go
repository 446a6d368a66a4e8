// Package fsizelimit runs part of a test in a helper process whose file
// writes the kernel cuts short, as a full disk would stop them: the
// helper limits the size of the files it writes (RLIMIT_FSIZE, which
// needs no privileges) and walks the positions a write can stop at.
//
// The test binary doubles as the helper: [Run] starts it again with an
// environment variable set, and the package's TestMain, seeing it, calls
// [Walk] instead of running the tests.
package fsizelimit

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
)

// DirEnv is the environment variable that gives the helper process its
// directory.
const DirEnv = "HELPER_DIR"

// Run runs the test binary as a helper process with env set to mode and
// DirEnv to dir, and fails tb unless the helper exits cleanly and reports
// the positions it walked ("positions: N", as [Walk] prints). It logs
// the helper's output.
func Run(tb testing.TB, env, mode, dir string) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env+"="+mode, DirEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "positions: ") {
		tb.Fatalf("helper: %v, %s", err, out)
	}
	tb.Logf("%s", bytes.TrimSpace(out))
}

// Walk runs walk in the helper process and returns the process's exit
// code. It first ignores SIGXFSZ, so that a write past the limit fails
// with EFBIG instead of killing the process; then it prints the number of
// positions walk reports, or its error.
func Walk(walk func() (int, error)) int {
	signal.Ignore(syscall.SIGXFSZ)
	n, err := walk()
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("positions:", n)
	return 0
}

// Limiter reads the process's RLIMIT_FSIZE and returns set, which limits
// the files the process writes to n bytes, and lift, which restores the
// hard limit.
func Limiter() (set func(n uint64) error, lift func() error, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		return nil, nil, err
	}
	set = func(n uint64) error {
		return syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: n, Max: lim.Max})
	}
	return set, func() error { return set(lim.Max) }, nil
}
