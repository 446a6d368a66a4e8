// Package wake broadcasts "something changed" to any number of waiters,
// such as lock waiters woken when a lock in the same process is released.
package wake

import "sync"

// A Signal wakes every goroutine waiting on it at the next Broadcast. Its
// zero value is ready to use, and it is safe for concurrent use.
//
// A waiter takes the channel before checking its condition, then waits on
// it, so a Broadcast between the check and the wait is not lost.
type Signal struct {
	mu sync.Mutex
	ch chan struct{}
}

// C returns a channel that is closed at the next Broadcast.
func (s *Signal) C() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// Broadcast wakes every goroutine waiting on a channel from C.
func (s *Signal) Broadcast() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}
