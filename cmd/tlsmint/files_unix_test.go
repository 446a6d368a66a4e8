//go:build unix

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestFIFOInsteadOfFile: a named pipe nobody writes to, given where a
// key, a secret or a configuration file is expected, is an error at once;
// it used to block the command in open(2) for ever, deaf to SIGINT and
// SIGTERM (their handler only cancels the context).
func TestFIFOInsteadOfFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	t.Cleanup(func() {
		// Release a reader still blocked in open.
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"account key", nil, []string{"account", "show", "--ca", closedURL(t), "--account-key", fifo}, exitFailure, fifo},
		{"EAB MAC key", nil, []string{"account", "register", "--accept-tos", "--ca", closedURL(t), "--account-key", filepath.Join(dir, "new.key"), "--eab-kid", "k", "--eab-hmac-file", fifo}, exitFailure, fifo},
		{"CA roots", nil, []string{"ari", fifo, "--ca", closedURL(t), "--ca-roots", fifo}, exitFailure, fifo},
		{"relay configuration", nil, []string{"relay", "--config", fifo}, exitFailure, fifo},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan result, 1)
			go func() { done <- runCmd(t, tc.env, tc.args...) }()
			select {
			case r := <-done:
				r.fails(t, tc.code, tc.want, "not a regular file")
			case <-time.After(20 * time.Second):
				t.Fatal("the command is still reading the named pipe after 20 s")
			}
		})
	}
	// A pipe with a writer, as a shell's <(…) hands over, is read.
	t.Run("pipe with a writer", func(t *testing.T) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		name := fmt.Sprintf("/dev/fd/%d", r.Fd())
		if _, err := os.Stat(name); err != nil {
			w.Close()
			t.Skipf("no %s: %v", name, err)
		}
		w.Write([]byte(`{}`))
		w.Close()
		runCmd(t, nil, "relay", "--config", name).fails(t, exitUsage, "storage: missing")
	})
}
