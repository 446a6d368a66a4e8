package autotls

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"runtime"
	"testing"
	"time"
)

// fakeEntry is a cached entry for a certificate that was never signed:
// enough for planning.
func fakeEntry(m *Manager, name string, serial int64, notBefore time.Time, life time.Duration) *entry {
	leaf := &x509.Certificate{SerialNumber: big.NewInt(serial), NotBefore: notBefore, NotAfter: notBefore.Add(life)}
	return m.newEntry(m.st.primary(), name, &tls.Certificate{Leaf: leaf}, nil, "", nil)
}

// The renewal window of every lifetime, with no configuration.
func TestOwnWindow(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		life       time.Duration
		start, end time.Duration // after NotBefore
	}{
		{6 * day, 6*day/2 - 6*day/10, 6 * day / 2},
		{10 * day, 5*day - day, 5 * day},
		{45 * day, 30*day - 45*day/10, 30 * day},
		{90 * day, 60*day - 9*day, 60 * day},
		{200 * day, 200*day - 200*day/3 - 20*day, 200*day - 200*day/3},
		{3 * time.Minute, 90*time.Second - 18*time.Second, 90 * time.Second},
	}
	for _, tc := range cases {
		s, e := ownWindow(nb, nb.Add(tc.life))
		if got, want := s.Sub(nb), tc.start; got != want {
			t.Errorf("life %v: window starts %v after issuance, want %v", tc.life, got, want)
		}
		if got, want := e.Sub(nb), tc.end; got != want {
			t.Errorf("life %v: window ends %v after issuance, want %v", tc.life, got, want)
		}
	}
}

// ARI's window is used when it is sound, ignored when it ends after expiry
// or is inverted, renews at once when it has passed, and never postpones
// renewal past a tenth of the lifetime left.
func TestPlanRenewalARI(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	na := nb.Add(90 * day)
	now := nb.Add(10 * day)
	cases := []struct {
		name     string
		ari      *ariState
		reason   string
		from, to time.Time
	}{
		{"none", nil, ReasonSchedule, nb.Add(51 * day), nb.Add(60 * day)},
		{"window", &ariState{WindowStart: nb.Add(59 * day), WindowEnd: nb.Add(61 * day)}, ReasonARI, nb.Add(59 * day), nb.Add(61 * day)},
		{"passed (revocation)", &ariState{WindowStart: now.Add(-2 * time.Hour), WindowEnd: now.Add(-time.Hour)}, ReasonARIPast, now, now},
		{"revoked: window before issuance", &ariState{WindowStart: nb.Add(-2 * time.Hour), WindowEnd: nb.Add(-time.Hour)}, ReasonARIPast, now, now},
		{"ends after expiry", &ariState{WindowStart: nb.Add(80 * day), WindowEnd: na.Add(day)}, ReasonSchedule, nb.Add(51 * day), nb.Add(60 * day)},
		{"inverted", &ariState{WindowStart: nb.Add(61 * day), WindowEnd: nb.Add(59 * day)}, ReasonSchedule, nb.Add(51 * day), nb.Add(60 * day)},
		{"late window clamped", &ariState{WindowStart: na.Add(-5 * day), WindowEnd: na.Add(-time.Hour)}, ReasonARI, na.Add(-9 * day), na.Add(-9 * day)},
	}
	for _, tc := range cases {
		at, reason := planRenewal("a.example.com", []byte{1, 2, 3}, nb, na, tc.ari, now)
		if reason != tc.reason || at.Before(tc.from) || at.After(tc.to) {
			t.Errorf("%s: renew at %v (%s), want %s between %v and %v", tc.name, at, reason, tc.reason, tc.from, tc.to)
		}
	}
}

// A thousand certificates issued in the same minute spread over their
// window; the same certificate always gets the same time.
func TestRenewalSpread(t *testing.T) {
	t.Parallel()
	m := &Manager{}
	m.state()
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	life := 6 * 24 * time.Hour
	start, end := ownWindow(nb, nb.Add(life))
	const n, buckets = 1000, 10
	var hist [buckets]int
	for i := range n {
		e := fakeEntry(m, fmt.Sprintf("n%d.example.com", i), int64(1000+i), nb.Add(time.Duration(i)*50*time.Millisecond), life)
		if again := fakeEntry(m, e.name, int64(1000+i), e.notBefore, life); !again.renewAt.Equal(e.renewAt) {
			t.Fatalf("%s: renewal time %v, then %v: want it fixed per certificate", e.name, e.renewAt, again.renewAt)
		}
		f := float64(e.renewAt.Sub(start)) / float64(end.Sub(start))
		if f < 0 || f > 1.01 {
			t.Fatalf("%s: renewal at %.3f of the window", e.name, f)
		}
		hist[min(int(f*buckets), buckets-1)]++
	}
	// Uniform: each tenth of the window holds about a tenth of them.
	for i, c := range hist {
		if c < n/buckets/2 || c > n/buckets*2 {
			t.Errorf("tenth %d of the window holds %d of %d renewals, want about %d: %v", i, c, n, n/buckets, hist)
		}
	}
	if w := end.Sub(start); w < life/20 {
		t.Errorf("window %v is under 5 %% of a %v lifetime", w, life)
	}
}

// 100,000 scheduled certificates: the work at any moment is what is due,
// and the schedule's memory per certificate is bounded.
func TestScheduleHundredThousand(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	m := &Manager{}
	st := m.state()
	defer m.Close()
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 100_000
	st.sched.started = true // no loop: the test takes what is due
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	life := 90 * 24 * time.Hour
	for i := range n {
		e := fakeEntry(m, fmt.Sprintf("n%d.example.com", i), int64(i+1), nb.Add(time.Duration(i)*time.Second), life)
		st.sched.at(m, e.name, e.renewAt)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	// The entries themselves are not kept here: what is measured is the
	// schedule's heap item and plan per name, and the name's string.
	perName := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("schedule: %.0f B per certificate (heap item, plan, name)", perName)
	if perName > 200 {
		t.Errorf("schedule costs %.0f B per certificate, want at most 200", perName)
	}

	// Nothing is due before the earliest window.
	start, _ := ownWindow(nb, nb.Add(life))
	if due := st.sched.due(start.Add(-time.Minute)); len(due) != 0 {
		t.Fatalf("%d due before any window opened", len(due))
	}
	// A day into the windows: exactly the certificates planned by then.
	at := start.Add(24 * time.Hour)
	want := 0
	st.sched.mu.Lock()
	for _, it := range st.sched.plans.items {
		if it.at <= at.UnixNano() {
			want++
		}
	}
	st.sched.mu.Unlock()
	due := st.sched.due(at)
	if len(due) != want || want == 0 || want == n {
		t.Fatalf("%d due a day into the windows, want %d (of %d)", len(due), want, n)
	}
	if left := st.sched.planned(); left != n-want {
		t.Fatalf("%d plans left, want %d", left, n-want)
	}
}

// BenchmarkSchedule measures planning a renewal and taking what is due
// with 100,000 certificates scheduled.
func BenchmarkSchedule(b *testing.B) {
	m := &Manager{}
	st := m.state()
	defer m.Close()
	st.sched.started = true // no loop: the benchmark drives it
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 100_000
	names := make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("n%d.example.com", i)
		st.sched.at(m, names[i], nb.Add(time.Duration(i)*time.Minute))
	}
	b.Run("plan", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			st.sched.at(m, names[i%n], nb.Add(time.Duration(n+i)*time.Minute))
			i++
		}
	})
	b.Run("due-one", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			// One name comes due and is planned again later.
			st.sched.at(m, names[i%n], nb)
			if len(st.sched.due(nb)) != 1 {
				b.Fatal("want one due")
			}
			i++
		}
	})
}
