package autotls

import (
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/storage"
)

// A name planned from the index whose renewal came due while the Manager
// was down is renewed at once when less than a tenth of its lifetime is
// left (the index holds its NotBefore), and spread over the catch-up
// window otherwise.
func TestIndexPlanCatchUpNearExpiry(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	m := &Manager{Storage: storage.NewMemory(), Hosts: HostWhitelist("near.example", "far.example")}
	SetClockForTest(m, func() time.Time { return now })
	defer m.Close()
	st := m.state()
	const day = 24 * time.Hour
	plan := func(name string, left time.Duration) time.Time {
		t.Helper()
		notAfter := now.Add(left)
		notBefore := notAfter.Add(-90 * day)
		m.planFromIndex(st.primary(), name, indexRecord{notAfter.Unix(), now.Add(-time.Hour).Unix(), notBefore.Unix(), 0})
		at, ok := PlanTimeForTest(m, name)
		if !ok {
			t.Fatalf("%s not planned", name)
		}
		return at
	}
	if at := plan("near.example", 5*day); !at.Equal(now) {
		t.Errorf("5 of 90 days left: planned %v, want now (%v)", at, now)
	}
	if at := plan("far.example", 20*day); at.Before(now) || at.After(now.Add(st.catchUpWindow)) {
		t.Errorf("20 of 90 days left: planned %v, want within the catch-up window after %v", at, now)
	}
}
