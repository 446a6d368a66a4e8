package storage

import (
	"errors"
	"testing"
)

// Crash makes s behave as if its process had died: the heartbeats of its
// locks stop and their files stay behind.
func Crash(s *FileStorage) {
	for _, l := range s.heldLocks() {
		l.abandon()
	}
}

// KeyPath exposes the key-to-path mapping of the file backend.
func KeyPath(key string) (dir, file string) { return keyPath(key) }

// UnescapeSegment exposes the inverse of the segment escaping.
func UnescapeSegment(s string) (string, bool) { return unescapeSegment(s) }

// SetDeleteHook makes every Delete call hook(key) between removing the file
// and syncing its folder, until the test ends. Tests that set it must not
// run in parallel.
func SetDeleteHook(t *testing.T, hook func(key string)) {
	testHookDeleted = hook
	t.Cleanup(func() { testHookDeleted = nil })
}

// A Disk stands for the disk under a FileStorage: see SetDisk.
type Disk = disk

// SetDisk makes every change s makes to its folder ask d for room first,
// as on a disk that fills up. Call it before s is first used.
func SetDisk(s *FileStorage, d Disk) { s.disk = d }

// DiskOf returns the Disk given to s by SetDisk.
func DiskOf(s *FileStorage) Disk { return s.disk }

// RefreshLocks rewrites the lock file of every lock held through s with
// heartbeat beat, as the heartbeat does.
func RefreshLocks(s *FileStorage, beat uint64) error {
	var errs []error
	for _, l := range s.heldLocks() {
		errs = append(errs, l.refresh(beat))
	}
	return errors.Join(errs...)
}
