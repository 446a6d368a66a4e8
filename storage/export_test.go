package storage

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
