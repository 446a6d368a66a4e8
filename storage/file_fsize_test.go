package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/internal/fsizelimit"
	"github.com/tlsmint/tlsmint/storage"
)

// The kernel cuts writes short at every position in turn, as a full disk
// does: a helper process limits the size of the files it writes
// (RLIMIT_FSIZE, which needs no privileges) to each byte of a journal
// Append, a Store and a lock file, and checks that each failed write left
// the files as they were, and that its retry, with the limit lifted, keeps
// each record once.
func TestFileSizeLimitEveryPosition(t *testing.T) {
	fsizelimit.Run(t, helperEnv, "fsize-walk", t.TempDir())
}

// fsizeWalk runs in the helper process: for each limit on the size of
// files, a journal Append, a Store and a Lock that cross it must fail,
// leave the files as they were, and succeed once the limit is lifted. It
// returns the number of positions walked.
func fsizeWalk(ctx context.Context, s *storage.FileStorage, dir string) (int, error) {
	limit, unlimited, err := fsizelimit.Limiter()
	if err != nil {
		return 0, err
	}
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	first := []storage.JournalEntry{journalEntry(0, "web-1", at)}
	batch := []storage.JournalEntry{journalEntry(1, "web-1", at.Add(time.Minute)), journalEntry(2, "web-1", at.Add(2*time.Minute))}
	p := filepath.Join(dir, ".journal", "audit", "web-1", "2026120110.jsonl")
	positions := 0

	// The journal: from the end of the first line to the end of the batch.
	if err := s.Append(ctx, "audit", first); err != nil {
		return 0, err
	}
	before, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	for size := len(before); ; size++ {
		if err := limit(uint64(size)); err != nil {
			return 0, err
		}
		err := s.Append(ctx, "audit", batch)
		if uerr := unlimited(); uerr != nil {
			return 0, uerr
		}
		if err == nil {
			break
		}
		positions++
		if !errors.Is(err, syscall.EFBIG) {
			return 0, fmt.Errorf("limit %d: Append = %v, want EFBIG", size, err)
		}
		if b, _ := os.ReadFile(p); !bytes.Equal(b, before) {
			return 0, fmt.Errorf("limit %d: after the failed Append the file holds %q, want %q", size, b, before)
		}
		if err := s.Append(ctx, "audit", batch); err != nil {
			return 0, fmt.Errorf("limit %d: the retried Append: %v", size, err)
		}
		got, err := s.ReadJournal(ctx, "audit", storage.JournalQuery{})
		if err != nil || len(got) != 3 {
			return 0, fmt.Errorf("limit %d: after the retry ReadJournal = %d entries, %v; want 3", size, len(got), err)
		}
		if err := s.TrimJournal(ctx, "audit", at.Add(24*time.Hour)); err != nil {
			return 0, err
		}
		if err := s.Append(ctx, "audit", first); err != nil {
			return 0, err
		}
	}

	// A Store over a value: the old one stays, whole; no temporary file.
	old, nu := bytes.Repeat([]byte("o"), 200), bytes.Repeat([]byte("n"), 300)
	if err := s.Store(ctx, "full/value", old); err != nil {
		return 0, err
	}
	for size := 0; size < len(nu); size++ {
		if err := limit(uint64(size)); err != nil {
			return 0, err
		}
		err := s.Store(ctx, "full/value", nu)
		if uerr := unlimited(); uerr != nil {
			return 0, uerr
		}
		positions++
		if !errors.Is(err, syscall.EFBIG) {
			return 0, fmt.Errorf("limit %d: Store = %v, want EFBIG", size, err)
		}
		if v, err := s.Load(ctx, "full/value"); err != nil || !bytes.Equal(v, old) {
			return 0, fmt.Errorf("limit %d: after the failed Store, Load = %q, %v; want the old value", size, v, err)
		}
		if left := tempFiles(dir); len(left) > 0 {
			return 0, fmt.Errorf("limit %d: temporary files left: %q", size, left)
		}
	}

	// A Lock: no lock file left, so the next Lock is at once.
	for size := 0; ; size++ {
		if err := limit(uint64(size)); err != nil {
			return 0, err
		}
		unlock, err := s.Lock(ctx, "full/lock")
		if uerr := unlimited(); uerr != nil {
			return 0, uerr
		}
		if err == nil {
			if err := unlock(); err != nil {
				return 0, err
			}
			break
		}
		positions++
		if !errors.Is(err, syscall.EFBIG) {
			return 0, fmt.Errorf("limit %d: Lock = %v, want EFBIG", size, err)
		}
		if left := tempFiles(dir); len(left) > 0 {
			return 0, fmt.Errorf("limit %d: temporary files left: %q", size, left)
		}
		_, file := storage.KeyPath("full/lock")
		if _, err := os.Stat(filepath.Join(dir, ".locks", file)); !errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("limit %d: after a failed Lock, its lock file: %v; want none", size, err)
		}
		unlock, err = s.Lock(ctx, "full/lock")
		if err != nil {
			return 0, fmt.Errorf("limit %d: Lock after a failed one: %v", size, err)
		}
		if err := unlock(); err != nil {
			return 0, err
		}
	}
	return positions, nil
}

// tempFiles lists the temporary files under dir.
func tempFiles(dir string) []string {
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
			out = append(out, p)
		}
		return nil
	})
	return out
}
