package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/internal/testsetup"
)

// readEnvFile reads the exports of dev-ca's env file.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		kv, ok := strings.CutPrefix(line, "export ")
		if !ok {
			continue
		}
		kv, _, _ = strings.Cut(kv, "   #")
		k, v, _ := strings.Cut(kv, "=")
		env[k] = strings.Trim(v, "'")
	}
	return env
}

// The README's recipe against dev-ca: its env file is all the other
// commands need to register, obtain, list, run the relay and check it.
func TestDevCA(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "dev")
	ctx, cancel := context.WithCancel(context.Background())
	out := &testsetup.Buffer{}
	done := make(chan int, 1)
	go func() {
		done <- runEnv(ctx, []string{"dev-ca", "--dir", dir}, strings.NewReader(""), out, io.Discard, func(string) string { return "" })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("dev-ca exited %d after SIGINT, want 0", code)
			}
		case <-time.After(30 * time.Second):
			t.Error("dev-ca did not stop")
		}
	})
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(out.String(), "Stop with Ctrl-C.") {
		if time.Now().After(deadline) {
			t.Fatalf("dev-ca printed no recipe:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("dev-ca:\n%s", out.String())
	env := readEnvFile(t, filepath.Join(dir, devEnvFile))
	for _, k := range []string{"TLSMINT_CA", "TLSMINT_CA_ROOTS", "TLSMINT_ACCOUNT_KEY", "TLSMINT_STORAGE", "TLSMINT_HTTP", "TLSMINT_DEV_ROOTS", "TLSMINT_DEV_RELAY"} {
		if env[k] == "" {
			t.Fatalf("env file lacks %s: %v", k, env)
		}
	}
	if m := mode(t, filepath.Join(dir, devTokenFile)); m != 0o600 {
		t.Errorf("admin token mode %04o, want 0600", m)
	}

	runCmd(t, env, "account", "register", "--accept-tos").ok(t)
	runCmd(t, env, "obtain", "app.test").ok(t)
	if r := runCmd(t, env, "certs", "list").ok(t); !strings.Contains(r.stdout, "app.test") || !strings.Contains(r.stdout, " ok ") {
		t.Errorf("certs list:\n%s", r.stdout)
	}
	startRelay(t, filepath.Join(dir, devRelayFile), env)
	r := runCmd(t, env, "check", env["TLSMINT_DEV_RELAY"], "--sni", devRelayName, "--trust", env["TLSMINT_DEV_ROOTS"]).ok(t)
	if !strings.HasPrefix(r.stdout, "OK:") || !strings.Contains(r.stdout, devRelayName) {
		t.Errorf("check of the relay:\n%s", r.stdout)
	}
}
