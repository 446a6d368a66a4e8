package storage

import "testing"

// Crash makes s behave as if its process had died: the heartbeats of its
// locks stop and their files stay behind.
func Crash(s *FileStorage) {
	s.mu.Lock()
	locks := make([]*fileLock, 0, len(s.held))
	for l := range s.held {
		locks = append(locks, l)
	}
	s.mu.Unlock()
	for _, l := range locks {
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
