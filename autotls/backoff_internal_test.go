package autotls

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/storage"
)

// clockManager returns a Manager whose clock is *now, guarded by mu.
func clockManager(t *testing.T, mu *sync.Mutex, now *time.Time) *Manager {
	t.Helper()
	m := &Manager{Issuers: []Issuer{{DirectoryURL: "https://ca.invalid/directory"}}, Storage: storage.NewMemory(), AcceptTOS: true, FailureBackoff: time.Minute}
	st := m.state()
	st.clock.local, st.clock.fixed = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return *now
	}, true
	t.Cleanup(func() { m.Close() })
	return m
}

// Failure records have no cap: thousands of names failing at once all
// keep their back-off; records whose back-off ended as long ago as it
// lasted are pruned once more names fail, except a name whose retry is
// planned.
func TestFailureRecordsPruned(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now := t0
	m := clockManager(t, &mu, &now)
	st := m.st
	errFail := errors.New("test: failed")
	const batch = 3000
	first := make([]string, batch)
	for i := range first {
		first[i] = fmt.Sprintf("a%d.example.com", i)
		m.recordFailure(first[i], errFail, t0, 0)
	}
	for _, name := range first {
		if st.failures.failureFor(name, t0.Add(50*time.Second)) == nil {
			t.Fatalf("%s forgotten while its back-off runs (%d records)", name, len(st.failures.byName))
		}
	}
	planned := first[0]
	st.sched.at(m, planned, t0.Add(time.Hour))

	// Three minutes on, the first batch's back-offs (about a minute) have
	// ended a minute ago or more: a second batch of failures prunes them.
	later := t0.Add(3 * time.Minute)
	mu.Lock()
	now = later
	mu.Unlock()
	second := make([]string, batch)
	for i := range second {
		second[i] = fmt.Sprintf("b%d.example.com", i)
		m.recordFailure(second[i], errFail, later, 0)
	}
	st.failures.mu.Lock()
	n := len(st.failures.byName)
	_, keptPlanned := st.failures.byName[planned]
	_, keptOther := st.failures.byName[first[1]]
	st.failures.mu.Unlock()
	if n != batch+1 {
		t.Errorf("got %d failure records, want %d (the second batch and the planned name)", n, batch+1)
	}
	if !keptPlanned {
		t.Errorf("%s, whose retry is planned, lost its failure record", planned)
	}
	if keptOther {
		t.Errorf("%s kept its failure record two back-offs after it failed", first[1])
	}
	for _, name := range second {
		if st.failures.failureFor(name, later.Add(50*time.Second)) == nil {
			t.Fatalf("%s forgotten while its back-off runs", name)
		}
	}
}

// A name that fails again soon after its back-off ended waits twice as
// long; one that fails again after as long again starts from the base.
func TestFailureBackoffDoubles(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now := t0
	m := clockManager(t, &mu, &now)
	errFail := errors.New("test: failed")
	within := func(got, want time.Duration) bool { return got >= want-want/10 && got <= want+want/10 }

	until := m.recordFailure("x.example.com", errFail, t0, 0)
	if d := until.Sub(t0); !within(d, time.Minute) {
		t.Fatalf("first back-off %v, want about a minute", d)
	}
	again := until.Add(10 * time.Second)
	until2 := m.recordFailure("x.example.com", errFail, again, 0)
	if d := until2.Sub(again); !within(d, 2*time.Minute) {
		t.Fatalf("back-off after a failure just after the first one ended: %v, want about two minutes", d)
	}
	// Force a pruning long after: the record is gone, and the next
	// failure waits the base again.
	late := until2.Add(3 * time.Minute)
	m.st.pruneFailures(late)
	if f := m.st.failures.byName["x.example.com"]; f != nil {
		t.Fatalf("record kept %v after its back-off ended", late.Sub(until2))
	}
	until3 := m.recordFailure("x.example.com", errFail, late, 0)
	if d := until3.Sub(late); !within(d, time.Minute) {
		t.Fatalf("back-off after a long quiet spell: %v, want about a minute", d)
	}
}
