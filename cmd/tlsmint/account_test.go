package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tlsmint/tlsmint/internal/testpebble"
)

func TestAccountLifecycle(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	dir := t.TempDir()
	key := filepath.Join(dir, "sub", "account.key")

	// No ToS acceptance: a usage error naming the terms, and no key file.
	r := ca.run(t, "--account-key", key, "account", "register", "--email", "ops@example.com")
	r.fails(t, exitUsage, "no ToS acceptance: pass --accept-tos after reading data:text/plain")
	noFile(t, key)

	r = ca.run(t, "--account-key", key, "--json", "account", "register", "--email", "ops@example.com", "--accept-tos").ok(t)
	var reg accountOutput
	r.decode(t, &reg)
	if reg.URL == "" || reg.Status != "valid" || !reg.Created || !slices.Equal(reg.Contact, []string{"mailto:ops@example.com"}) {
		t.Errorf("register printed %+v", reg)
	}
	if m := mode(t, key); m != 0o600 {
		t.Errorf("key file mode %04o, want 0600", m)
	}
	if m := mode(t, filepath.Dir(key)); m != 0o700 {
		t.Errorf("key folder mode %04o, want 0700", m)
	}
	if leftovers := onlyFiles(t, filepath.Dir(key)); !slices.Equal(leftovers, []string{"account.key"}) {
		t.Errorf("key folder holds %v, want only account.key", leftovers)
	}

	// Registering again with the same key shows the same account.
	r = ca.run(t, "--account-key", key, "--json", "account", "register", "--accept-tos").ok(t)
	var again accountOutput
	r.decode(t, &again)
	if again.URL != reg.URL || again.Created {
		t.Errorf("second register: %+v, want the account %s, key not created", again, reg.URL)
	}

	r = ca.run(t, "--account-key", key, "account", "show").ok(t)
	if !strings.Contains(r.stdout, reg.URL) || !strings.Contains(r.stdout, "mailto:ops@example.com") {
		t.Errorf("show does not print the account and its contact:\n%s", r.stdout)
	}

	r = ca.run(t, "--account-key", key, "--json", "account", "update", "--email", "a@example.com", "--email", "b@example.com").ok(t)
	var upd accountOutput
	r.decode(t, &upd)
	if !slices.Equal(upd.Contact, []string{"mailto:a@example.com", "mailto:b@example.com"}) {
		t.Errorf("update: contact %v", upd.Contact)
	}
	ca.run(t, "--account-key", key, "account", "update").fails(t, exitUsage, "nothing to update")
	ca.run(t, "--account-key", key, "account", "update", "--email", "not an address").fails(t, exitUsage, "bare address")

	// Rollover: the key file holds a new key, the account is the same.
	before, _ := os.ReadFile(key)
	r = ca.run(t, "--account-key", key, "--json", "account", "rollover").ok(t)
	var rolled accountOutput
	r.decode(t, &rolled)
	after, _ := os.ReadFile(key)
	if bytes.Equal(before, after) || rolled.URL != reg.URL || rolled.Thumbprint == reg.Thumbprint {
		t.Errorf("rollover: key changed %v, account %s (want %s), thumbprint %s (was %s)", !bytes.Equal(before, after), rolled.URL, reg.URL, rolled.Thumbprint, reg.Thumbprint)
	}
	if m := mode(t, key); m != 0o600 {
		t.Errorf("key file mode after rollover %04o, want 0600", m)
	}
	// The old key is no longer the account's.
	old := filepath.Join(dir, "old.key")
	os.WriteFile(old, before, 0o600)
	ca.run(t, "--account-key", old, "account", "show").fails(t, exitFailure, "the CA has no account for this key", "account register")

	ca.run(t, "--account-key", key, "account", "deactivate").fails(t, exitUsage, "cannot be undone: pass --yes")
	r = ca.run(t, "--account-key", key, "--json", "account", "deactivate", "--yes").ok(t)
	var deact accountOutput
	r.decode(t, &deact)
	if deact.Status != "deactivated" {
		t.Errorf("deactivate: status %q, want deactivated", deact.Status)
	}
	if r := ca.run(t, "--account-key", key, "account", "show"); r.code == 0 {
		t.Errorf("show after deactivation succeeded")
	}
}

func TestAccountBadInput(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	dir := t.TempDir()

	t.Run("missing key", func(t *testing.T) {
		key := filepath.Join(dir, "none.key")
		ca.run(t, "--account-key", key, "account", "show").fails(t, exitUsage, "no account key at "+key, "account register")
		noFile(t, key)
	})
	t.Run("unreadable key file", func(t *testing.T) {
		key := filepath.Join(dir, "garbage.key")
		os.WriteFile(key, []byte("not a key\n"), 0o600)
		ca.run(t, "--account-key", key, "account", "show").fails(t, exitFailure, key, "no PEM private key")
		ca.run(t, "--account-key", key, "account", "register", "--accept-tos").fails(t, exitFailure, "no PEM private key")
		if b, _ := os.ReadFile(key); string(b) != "not a key\n" {
			t.Errorf("the bad key file was changed to %q", b)
		}
	})
	t.Run("key path is a folder", func(t *testing.T) {
		ca.run(t, "--account-key", dir, "account", "show").fails(t, exitFailure, "reading key")
	})
	t.Run("CA down", func(t *testing.T) {
		key := filepath.Join(dir, "down.key")
		down := closedURL(t)
		r := runCmd(t, nil, "--ca", down, "--ca-roots", ca.rootsFile, "--account-key", key, "account", "register", "--accept-tos")
		r.fails(t, exitFailure, "cannot reach the CA at "+down, "check --ca")
		noFile(t, key)
	})
	t.Run("CA not trusted", func(t *testing.T) {
		key := filepath.Join(dir, "untrusted.key")
		r := runCmd(t, nil, "--ca", ca.DirectoryURL(), "--account-key", key, "account", "register", "--accept-tos")
		r.fails(t, exitFailure, "not trusted", "--ca-roots")
		noFile(t, key)
	})
	t.Run("bad flags", func(t *testing.T) {
		ca.run(t, "account", "register", "--no-such-flag").fails(t, exitUsage, "unknown flag", "; see tlsmint account register --help")
		ca.run(t, "no-such-command").fails(t, exitUsage, "unknown command", "; see tlsmint --help")
		runCmd(t, nil, "--ca", "http://insecure/dir", "--account-key", filepath.Join(dir, "k"), "account", "show").fails(t, exitUsage, "https:// directory URL")
		ca.run(t, "--ca-roots", filepath.Join(dir, "missing.pem"), "--account-key", filepath.Join(dir, "k"), "account", "show").fails(t, exitFailure, "--ca-roots")
		ca.run(t, "account", "register", "--accept-tos", "--key-type", "dsa", "--account-key", filepath.Join(dir, "k")).fails(t, exitUsage, "--key-type")
	})
}

func TestAccountEAB(t *testing.T) {
	t.Parallel()
	const kid, mac = "kid-1", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
	ca := newCA(t, testpebble.Options{RequireEAB: true, EABKeys: map[string]string{kid: mac}})
	dir := t.TempDir()

	t.Run("required", func(t *testing.T) {
		key := filepath.Join(dir, "none.key")
		ca.run(t, "--account-key", key, "account", "register", "--accept-tos").fails(t, exitUsage, "requires External Account Binding", "TLSMINT_EAB_HMAC")
		noFile(t, key)
	})
	t.Run("wrong MAC", func(t *testing.T) {
		key := filepath.Join(dir, "wrong.key")
		macFile := filepath.Join(dir, "wrong-mac")
		os.WriteFile(macFile, []byte("c29tZSBvdGhlciBrZXkgdGhhdCBpcyBub3QgdGhlIHJpZ2h0IG9uZQ\n"), 0o600)
		ca.run(t, "--account-key", key, "account", "register", "--accept-tos", "--eab-kid", kid, "--eab-hmac-file", macFile).
			fails(t, exitFailure, "External Account Binding", "check the key ID")
		noFile(t, key)
	})
	t.Run("MAC without key ID", func(t *testing.T) {
		ca.runEnv(t, map[string]string{"TLSMINT_EAB_HMAC": mac}, "--account-key", filepath.Join(dir, "x.key"), "account", "register", "--accept-tos").
			fails(t, exitUsage, "without a key ID")
	})
	t.Run("from the environment", func(t *testing.T) {
		key := filepath.Join(dir, "env.key")
		env := map[string]string{"TLSMINT_EAB_KID": kid, "TLSMINT_EAB_HMAC": mac, "TLSMINT_ACCOUNT_KEY": key}
		r := ca.runEnv(t, env, "account", "register", "--accept-tos").ok(t)
		if strings.Contains(r.stdout+r.stderr, mac) {
			t.Errorf("the MAC key was printed")
		}
		if m := mode(t, key); m != 0o600 {
			t.Errorf("key mode %04o", m)
		}
	})
	t.Run("from a file", func(t *testing.T) {
		key := filepath.Join(dir, "file.key")
		macFile := filepath.Join(dir, "mac")
		os.WriteFile(macFile, []byte(mac+"\n"), 0o600)
		ca.run(t, "--account-key", key, "account", "register", "--accept-tos", "--eab-kid", kid, "--eab-hmac-file", macFile).ok(t)
	})
}

func TestHelpHasExamples(t *testing.T) {
	t.Parallel()
	var walk func(path []string)
	seen := 0
	walk = func(path []string) {
		a := &app{stdout: new(bytes.Buffer), stderr: new(bytes.Buffer), getenv: func(string) string { return "" }}
		cmd, _, err := a.rootCommand().Find(path)
		if err != nil {
			t.Fatal(err)
		}
		seen++
		if cmd.Name() != "help" && !strings.HasPrefix(cmd.CommandPath(), "tlsmint completion") && cmd.Example == "" {
			t.Errorf("%s has no examples", cmd.CommandPath())
		}
		for _, sub := range cmd.Commands() {
			walk(append(slices.Clone(path), sub.Name()))
		}
	}
	walk(nil)
	r := runCmd(t, nil, "account", "register", "--help").ok(t)
	if !strings.Contains(r.stdout, "Examples:") || !strings.Contains(r.stdout, "--accept-tos") {
		t.Errorf("register --help:\n%s", r.stdout)
	}
	if seen < 6 {
		t.Errorf("walked %d commands", seen)
	}
}
