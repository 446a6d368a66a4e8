package postgres

// Crash makes s behave as if its process had died: heartbeats stop and the
// leases stay in the table until they expire.
func Crash(s *Storage) {
	s.mu.Lock()
	held := make([]*lease, 0, len(s.held))
	for l := range s.held {
		held = append(held, l)
	}
	s.mu.Unlock()
	for _, l := range held {
		l.abandon()
	}
}
