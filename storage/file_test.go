package storage_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/internal/fsizelimit"
	"github.com/tlsmint/tlsmint/storage"
	"github.com/tlsmint/tlsmint/storage/storagetest"
)

const helperEnv = "TLSMINT_STORAGE_TEST_HELPER"

// TestMain lets the test binary double as a helper process that can be
// killed in the middle of a write or while holding a lock.
func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode, os.Getenv(fsizelimit.DirEnv)))
	}
	os.Exit(m.Run())
}

func helper(mode, dir string) int {
	ctx := context.Background()
	s := &storage.FileStorage{Path: dir, StaleAfter: 500 * time.Millisecond, PollInterval: 10 * time.Millisecond}
	switch mode {
	case "write":
		for i := 0; ; i++ {
			if err := s.Store(ctx, "crash/value", storagetest.Sealed(byte(i), 256<<10+i%4096)); err != nil {
				fmt.Println("error:", err)
				return 1
			}
			if i == 0 {
				fmt.Println("ready")
			}
		}
	case "store", "delete":
		// One change to watched/value, for the watch tests.
		var err error
		if mode == "store" {
			err = s.Store(ctx, "watched/value", []byte("from another process"))
		} else {
			err = s.Delete(ctx, "watched/value")
		}
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		fmt.Println("ready")
		return 0
	case "lock":
		if _, err := s.Lock(ctx, "crash/lock"); err != nil {
			fmt.Println("error:", err)
			return 1
		}
		fmt.Println("ready")
		select {}
	case "fsize":
		signal.Ignore(syscall.SIGXFSZ)
		lim := syscall.Rlimit{Cur: 64 << 10, Max: 64 << 10}
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
			fmt.Println("setrlimit:", err)
			return 1
		}
		err := s.Store(ctx, "full/value", bytes.Repeat([]byte("n"), 1<<20))
		fmt.Println("store:", err)
		return 0
	case "fsize-walk":
		return fsizelimit.Walk(func() (int, error) { return fsizeWalk(ctx, s, dir) })
	}
	return 2
}

// startHelper runs the test binary in helper mode and waits until it says
// it is ready.
func startHelper(t *testing.T, mode, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, fsizelimit.DirEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("helper %s said %q, %v", mode, line, err)
	}
	return cmd
}

func fastFile(dir string) *storage.FileStorage {
	return &storage.FileStorage{
		Path:            dir,
		StaleAfter:      500 * time.Millisecond,
		RefreshInterval: 100 * time.Millisecond,
		PollInterval:    10 * time.Millisecond,
	}
}

func TestFileConformance(t *testing.T) {
	dir := t.TempDir()
	// The suite's holders are alive while others wait: StaleAfter is 20
	// refresh intervals, so that no stall of a heartbeat (an fsync on a busy
	// disk, a starved process) lets a waiter take a live lock over.
	const staleAfter = 2 * time.Second
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		s := newDisk(fastFile(dir))
		s.StaleAfter = staleAfter
		s.WatchInterval = 50 * time.Millisecond
		t.Cleanup(func() { _ = s.Close() })
		return s
	},
		storagetest.WithCrash(func(t *testing.T, s storage.Storage) { storage.Crash(s.(*storage.FileStorage)) }),
		storagetest.WithLockExpiry(staleAfter),
		storagetest.WithFullDisk(fill),
	)
}

func TestDirDoesNoIO(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s := storage.Dir(dir)
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Dir created %s before first use (Stat: %v)", dir, err)
	}
	if err := s.Store(t.Context(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("after first Store, %s: %v, %v; want a 0700 folder", dir, fi, err)
	}
	if err := storage.Dir("").Store(t.Context(), "k", nil); err == nil {
		t.Error("Store with an empty Path succeeded")
	}
}

func TestFileKeyPath(t *testing.T) {
	for _, tc := range []struct{ key, want string }{
		{"certificates/acme-v02.api.letsencrypt.org-directory/example.com/example.com.json",
			"certificates+/acme-v02.api.letsencrypt.org-directory+/example.com+/example.com.json"},
		{"Example.COM", "%45xample.%43%4f%4d"},
		{".hidden", "%2ehidden"},
		{"a..b", "a..b"},
		{"*.example.com", "%2a.example.com"},
		{"users/ops@example.com", "users+/ops%40example.com"},
		{"100%", "100%25"},
		{"plain+", "plain%2b"},
		{"a+b&c", "a%2bb%26c"},
		{"ключ", "%d0%ba%d0%bb%d1%8e%d1%87"},
		{strings.Repeat("x", 450), strings.Repeat("x", 200) + "&/" + strings.Repeat("x", 200) + "&/" + strings.Repeat("x", 50)},
	} {
		if _, got := storage.KeyPath(tc.key); got != tc.want {
			t.Errorf("KeyPath(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
}

func FuzzKeyPath(f *testing.F) {
	for _, k := range []string{"a", "A/b", "../x", ".x/..y", "x%41", "a+/b&", strings.Repeat("É", 300)} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if storage.CheckKey(key) != nil {
			return
		}
		_, p := storage.KeyPath(key)
		if strings.ToLower(p) != p {
			t.Errorf("KeyPath(%q) = %q is not case-stable", key, p)
		}
		if !filepath.IsLocal(p) {
			t.Errorf("KeyPath(%q) = %q is not local", key, p)
		}
		// Decode the path back into the key.
		var segs []string
		pending := ""
		for _, c := range strings.Split(p, "/") {
			if len(c) > 255 {
				t.Fatalf("KeyPath(%q) has a %d-byte name", key, len(c))
			}
			if strings.HasPrefix(c, ".") {
				t.Fatalf("KeyPath(%q) = %q has a hidden name", key, p)
			}
			switch c[len(c)-1] {
			case '&':
				pending += c[:len(c)-1]
				continue
			case '+':
				c = c[:len(c)-1]
			}
			seg, ok := storage.UnescapeSegment(pending + c)
			if !ok {
				t.Fatalf("KeyPath(%q) = %q: cannot decode %q", key, p, pending+c)
			}
			segs = append(segs, seg)
			pending = ""
		}
		if got := strings.Join(segs, "/"); got != key {
			t.Errorf("KeyPath(%q) = %q decodes to %q", key, p, got)
		}
	})
}

func TestFileTraversal(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	outside := filepath.Join(parent, "outside")
	if err := os.Mkdir(outside, 0o700); err != nil {
		t.Fatal(err)
	}
	s := storage.Dir(root)
	ctx := t.Context()
	for _, key := range []string{"../outside/x", "/etc/passwd", `..\outside\x`, "a/../../outside/x", ".", "..",
		"nul\x00x", "x/./y", strings.Repeat("a", 2000), "/" + outside + "/x"} {
		if err := s.Store(ctx, key, []byte("x")); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Store(%q) = %v, want ErrInvalidKey", key, err)
		}
		if unlock, err := s.Lock(ctx, key); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Lock(%q) = %v, want ErrInvalidKey", key, err)
			if err == nil {
				_ = unlock()
			}
		}
	}
	// A symbolic link planted inside the folder cannot lead out of it.
	if err := os.MkdirAll(root, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "evil+")); err != nil {
		t.Fatal(err)
	}
	if err := s.Store(ctx, "evil/x", []byte("x")); err == nil {
		t.Error("Store through a symbolic link out of the folder succeeded")
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("files were written outside the folder: %v", entries)
	}
}

func TestFilePermissions(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	root := filepath.Join(t.TempDir(), "store")
	s := storage.Dir(root)
	ctx := t.Context()
	if err := s.Store(ctx, "certificates/ca/example.com/example.com.key", []byte("secret")); err != nil {
		t.Fatal(err)
	}
	unlock, err := s.Lock(ctx, "certificates/ca/example.com")
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", p, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
}

func TestFileCrashDuringWrite(t *testing.T) {
	dir := t.TempDir()
	s := storage.Dir(dir)
	for round := range 8 {
		cmd := startHelper(t, "write", dir)
		time.Sleep(time.Duration(round*7%40) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		v, err := s.Load(t.Context(), "crash/value")
		if err != nil {
			t.Fatalf("round %d: Load after kill: %v", round, err)
		}
		if err := storagetest.CheckSealed(v); err != nil {
			t.Fatalf("round %d: after kill: %v", round, err)
		}
	}
	keys, err := s.List(t.Context(), "")
	if err != nil || len(keys) != 1 {
		t.Errorf("List = %q, %v; want only crash/value (temporary files are not keys)", keys, err)
	}
}

func TestFileCrashedHolder(t *testing.T) {
	dir := t.TempDir()
	cmd := startHelper(t, "lock", dir)
	s := fastFile(dir)
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	_, err := s.Lock(ctx, "crash/lock")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock while a live process holds it = %v, want context.DeadlineExceeded", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	start := time.Now()
	ctx, cancel = context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	unlock, err := s.Lock(ctx, "crash/lock")
	if err != nil {
		t.Fatalf("Lock after the holder was killed: %v", err)
	}
	t.Logf("took over after %v (StaleAfter %v)", time.Since(start).Round(time.Millisecond), s.StaleAfter)
	if err := unlock(); err != nil {
		t.Error(err)
	}
}

// countHandler counts log records.
type countHandler struct{ n atomic.Int32 }

func (h *countHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (h *countHandler) Handle(context.Context, slog.Record) error { h.n.Add(1); return nil }
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler        { return h }
func (h *countHandler) WithGroup(string) slog.Handler             { return h }

func TestFileDamagedLockFiles(t *testing.T) {
	for name, content := range map[string]string{"empty": "", "garbage": "\x00\x01not json", "no owner": `{"beat":"1"}`} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			h := &countHandler{}
			s := fastFile(dir)
			s.Logger = slog.New(h)
			_, file := storage.KeyPath("damaged")
			p := filepath.Join(dir, ".locks", file)
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			unlock, err := s.Lock(ctx, "damaged")
			if err != nil {
				t.Fatalf("Lock over a damaged lock file: %v", err)
			}
			if err := unlock(); err != nil {
				t.Error(err)
			}
			if n := h.n.Load(); n == 0 || n > 3 {
				t.Errorf("%d log records while taking over a damaged lock file, want 1 to 3", n)
			}
		})
	}
}

func TestFileClockSkew(t *testing.T) {
	dir := t.TempDir()
	holder, waiter := fastFile(dir), fastFile(dir)
	defer holder.Close()
	defer waiter.Close()
	unlock, err := holder.Lock(t.Context(), "skew")
	if err != nil {
		t.Fatal(err)
	}
	_, file := storage.KeyPath("skew")
	p := filepath.Join(dir, ".locks", file)
	// The holder's clock says the file is a day old: a waiter comparing
	// clocks would take it over at its first look; this one must not, the
	// holder is alive. Waiting half of StaleAfter gives it dozens of looks,
	// and no correct waiter can take a lock over before StaleAfter, however
	// late the holder's heartbeat runs on a busy machine.
	old := time.Now().Add(-24 * time.Hour)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), waiter.StaleAfter/2)
	_, err = waiter.Lock(ctx, "skew")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock of a live lock whose file looks old = %v, want context.DeadlineExceeded", err)
	}
	// A dead holder whose clock ran a day ahead is still taken over.
	storage.Crash(holder)
	future := time.Now().Add(24 * time.Hour)
	if err := os.Chtimes(p, future, future); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	u, err := waiter.Lock(ctx, "skew")
	if err != nil {
		t.Fatalf("Lock of a dead holder's lock dated in the future: %v", err)
	}
	_ = u()
	_ = unlock()
}

func TestFileLockLost(t *testing.T) {
	dir := t.TempDir()
	s := fastFile(dir)
	defer s.Close()
	lockCtx, unlock, err := s.LockContext(t.Context(), "lost")
	if err != nil {
		t.Fatal(err)
	}
	_, file := storage.KeyPath("lost")
	p := filepath.Join(dir, ".locks", file)
	// Another process took the lock over, believing this holder dead.
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(`{"owner":"someone else"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lockCtx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("lock context not cancelled after the lock file was replaced")
	}
	if cause := context.Cause(lockCtx); !errors.Is(cause, storage.ErrLockLost) {
		t.Errorf("cause = %v, want ErrLockLost", cause)
	}
	if err := unlock(); !errors.Is(err, storage.ErrLockLost) {
		t.Errorf("unlock of a lost lock = %v, want ErrLockLost", err)
	}
	if b, _ := os.ReadFile(p); string(b) != `{"owner":"someone else"}` {
		t.Errorf("unlock removed or changed the new holder's lock file: %q", b)
	}
}

func TestFileDiskFull(t *testing.T) {
	dir := t.TempDir()
	s := storage.Dir(dir)
	if err := s.Store(t.Context(), "full/value", []byte("old value")); err != nil {
		t.Fatal(err)
	}
	// The helper can write no file larger than 64 KiB, as on a full disk.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=fsize", fsizelimit.DirEnv+"="+dir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v, %s", err, out)
	}
	if !strings.HasPrefix(string(out), "store: ") || strings.Contains(string(out), "<nil>") {
		t.Fatalf("Store on a full disk: %q, want an error", out)
	}
	t.Logf("Store on a full disk: %s", strings.TrimSpace(string(out)))
	if v, err := s.Load(t.Context(), "full/value"); err != nil || string(v) != "old value" {
		t.Errorf("after a failed Store, Load = %q, %v; want the old value", v, err)
	}
	assertNoTempFiles(t, dir)
}

func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", p)
		}
		return nil
	})
}

func TestFileReadOnly(t *testing.T) {
	dir := t.TempDir()
	s := storage.Dir(dir)
	ctx := t.Context()
	if err := s.Store(ctx, "ro/value", []byte("old value")); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "ro+")
	makeReadOnly(t, dir, sub)
	if err := s.Store(ctx, "ro/value", []byte("new value")); err == nil {
		t.Error("Store into a read-only folder succeeded")
	}
	if err := s.Store(ctx, "other", []byte("x")); err == nil {
		t.Error("Store into a read-only folder succeeded")
	}
	if err := s.Delete(ctx, "ro/value"); err == nil {
		t.Error("Delete in a read-only folder succeeded")
	}
	if v, err := s.Load(ctx, "ro/value"); err != nil || string(v) != "old value" {
		t.Errorf("Load = %q, %v; want the old value", v, err)
	}
	if _, err := s.Load(ctx, "other"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(other) = %v, want fs.ErrNotExist", err)
	}
}

// makeReadOnly makes folders unwritable, even for root (with chattr +i).
func makeReadOnly(t *testing.T, dirs ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		for _, d := range dirs {
			if err := os.Chmod(d, 0o500); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Chmod(d, 0o700) })
		}
		return
	}
	for _, d := range dirs {
		if out, err := exec.Command("chattr", "+i", d).CombinedOutput(); err != nil {
			t.Skipf("running as root and cannot make %s immutable: %v %s", d, err, out)
		}
		t.Cleanup(func() { _ = exec.Command("chattr", "-i", d).Run() })
	}
}

func TestFileIOErrorIsNotMissing(t *testing.T) {
	dir := t.TempDir()
	s := storage.Dir(dir)
	// Something that is not a regular file where a value should be.
	if err := os.MkdirAll(filepath.Join(dir, "weird"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(t.Context(), "weird"); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a key whose file is a folder = %v, want an error that is not fs.ErrNotExist", err)
	}
	if _, err := s.Stat(t.Context(), "weird"); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat of a key whose file is a folder = %v, want an error that is not fs.ErrNotExist", err)
	}
}
