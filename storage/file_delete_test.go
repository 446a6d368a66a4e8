package storage_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tlsmint/tlsmint/storage"
)

// TestFileDeleteVanishedFolder puts the sibling Delete (or an operator's
// rm -r) exactly between the removal of the file and the sync of its
// folder, where it used to make Delete fail with "no such file or
// directory".
func TestFileDeleteVanishedFolder(t *testing.T) {
	tests := []struct {
		name string
		// vanish runs inside the first Delete, after its file is gone.
		vanish func(t *testing.T, s *storage.FileStorage, dir string)
	}{
		{"sibling Delete removes the folder", func(t *testing.T, s *storage.FileStorage, dir string) {
			if err := s.Delete(t.Context(), "challenges/token/b"); err != nil {
				t.Errorf("sibling Delete: got %v, want nil", err)
			}
		}},
		{"folder removed from outside", func(t *testing.T, s *storage.FileStorage, dir string) {
			folder, _ := storage.KeyPath("challenges/token/a")
			if err := os.RemoveAll(filepath.Join(dir, filepath.FromSlash(folder))); err != nil {
				t.Error(err)
			}
		}},
		{"parent folder removed from outside", func(t *testing.T, s *storage.FileStorage, dir string) {
			if err := os.RemoveAll(filepath.Join(dir, "challenges+")); err != nil {
				t.Error(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, dir := t.Context(), t.TempDir()
			s := storage.Dir(dir)
			t.Cleanup(func() { _ = s.Close() })
			for _, k := range []string{"challenges/token/a", "challenges/token/b"} {
				if err := s.Store(ctx, k, []byte("v")); err != nil {
					t.Fatal(err)
				}
			}
			var once sync.Once
			storage.SetDeleteHook(t, func(key string) {
				if key == "challenges/token/a" {
					once.Do(func() { tt.vanish(t, s, dir) })
				}
			})
			if err := s.Delete(ctx, "challenges/token/a"); err != nil {
				t.Errorf("Delete: got %v, want nil", err)
			}
			if _, err := s.Load(ctx, "challenges/token/a"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Load after Delete: got %v, want an error wrapping fs.ErrNotExist", err)
			}
		})
	}
}

// TestFileDeleteSiblingsConcurrently is the real-world form of the race: the
// clean-ups of many http-01 challenges delete sibling keys of one folder at
// once, and the last to leave removes the folder, while an outside rm -r
// sometimes beats them all to it. Every Delete must return nil.
func TestFileDeleteSiblingsConcurrently(t *testing.T) {
	ctx, dir := t.Context(), t.TempDir()
	s := storage.Dir(dir)
	t.Cleanup(func() { _ = s.Close() })
	const rounds, siblings = 100, 8
	failures := 0
	for r := range rounds {
		keys := make([]string, siblings)
		for i := range keys {
			keys[i] = fmt.Sprintf("challenges/r%d/k%d", r, i)
			if err := s.Store(ctx, keys[i], []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
		folder, _ := storage.KeyPath(keys[0])
		errs := make([]error, siblings)
		var wg sync.WaitGroup
		for i, k := range keys {
			wg.Go(func() { errs[i] = s.Delete(ctx, k) })
		}
		if r%2 == 1 {
			wg.Go(func() { _ = os.RemoveAll(filepath.Join(dir, filepath.FromSlash(folder))) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				if failures++; failures <= 3 {
					t.Errorf("round %d: Delete(%q): got %v, want nil", r, keys[i], err)
				}
			}
		}
	}
	if failures > 0 {
		t.Errorf("%d of %d Deletes failed", failures, rounds*siblings)
	}
	if keys, err := s.List(ctx, "challenges/"); err != nil || len(keys) != 0 {
		t.Errorf("List after the clean-ups: got %q, %v; want no keys", keys, err)
	}
}
