package autotls

import (
	"fmt"
	"runtime/debug"
)

// recovered turns a panic during the issuance of name (in a solver, a DNS
// provider, storage, OnEvent, …) into a failed issuance, so that no panic
// in the Manager's work takes the process down: the stack is logged at
// Error, the name backs off as after any failure, and EventFailed is
// emitted. It returns the error the issuance's waiters get. It must be
// called from the deferred function that recovered v.
func (m *Manager) recovered(name string, v any) error {
	var err error
	if e, ok := v.(error); ok {
		err = fmt.Errorf("autotls: obtaining %s: panic: %w", name, e)
	} else {
		err = fmt.Errorf("autotls: obtaining %s: panic: %v", name, v)
	}
	stack := debug.Stack()
	retry := m.recordFailure(name, err, m.now(), 0)
	// The logger and OnEvent are the user's and may be what panicked:
	// a panic of theirs here is dropped rather than let through.
	guard(func() {
		m.st.log.Error("autotls: recovered from a panic; the issuance failed", "name", name, "panic", fmt.Sprint(v), "stack", string(stack))
	})
	guard(func() { m.emit(Event{Type: EventFailed, Name: name, Err: err, RetryAt: retry}) })
	return err
}

// guard runs f, dropping any panic.
func guard(f func()) {
	defer func() { _ = recover() }()
	f()
}
