package relay

import "time"

// SetClock makes s read the time from now, for tests of what happens
// over days and years.
func SetClock(s *Server, now func() time.Time) { s.now = now }
