package autotls

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// The per-name bound: three certificates within the window, then held
// until the oldest leaves it; a short lifetime shortens the window.
func TestNameOrders(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		life   time.Duration
		window time.Duration
	}{
		{90 * 24 * time.Hour, NameOrderWindow},
		{47 * 24 * time.Hour, NameOrderWindow},
		{2 * 24 * time.Hour, 12 * time.Hour},
		{16 * time.Second, 4 * time.Second},
	}
	for _, tc := range cases {
		var o nameOrders
		step := tc.window / 10
		for i := range MaxCertificatesPerName {
			at := t0.Add(time.Duration(i) * step)
			if _, _, held := o.held("a.example.com", at); held {
				t.Fatalf("life %v: held before certificate %d", tc.life, i+1)
			}
			o.obtained("a.example.com", at, tc.life)
		}
		now := t0.Add(time.Duration(MaxCertificatesPerName) * step)
		until, window, held := o.held("a.example.com", now)
		if !held || window != tc.window || !until.Equal(t0.Add(tc.window)) {
			t.Errorf("life %v: held %v until %v (window %v), want held until %v", tc.life, held, until, window, t0.Add(tc.window))
		}
		if _, _, held := o.held("a.example.com", t0.Add(tc.window)); held {
			t.Errorf("life %v: still held once the oldest left the window", tc.life)
		}
		if _, _, held := o.held("b.example.com", now); held {
			t.Errorf("life %v: another name is held", tc.life)
		}
	}
}

// The per-issuer bound paces: a burst of as many orders as the bound,
// then one every 60 s / bound; a reservation given back is reused.
func TestOrderLimiterPaces(t *testing.T) {
	t.Parallel()
	l := orderLimiter(2)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	want := []time.Duration{0, 0, 30 * time.Second, 60 * time.Second}
	for i, w := range want {
		if got := l.reserve(t0); got != w {
			t.Errorf("order %d: wait %v, want %v", i+1, got, w)
		}
	}
	l.unreserve()
	if got := l.reserve(t0); got != 60*time.Second {
		t.Errorf("after giving one back: wait %v, want 60s", got)
	}
	if got := l.reserve(t0.Add(90 * time.Second)); got != 0 {
		t.Errorf("90 s later (three tokens earned, two owed): wait %v, want none", got)
	}
	if got := l.reserve(t0.Add(90 * time.Second)); got != 30*time.Second {
		t.Errorf("then at once: wait %v, want 30s", got)
	}
	if orderLimiter(-1) != nil {
		t.Error("a negative bound limits orders")
	}
	if l := orderLimiter(0); l.max != DefaultMaxOrdersPerMinute {
		t.Errorf("zero means %v orders a minute, want DefaultMaxOrdersPerMinute", l.max)
	}
}

// An order that would wait longer than its context allows is refused at
// once with ErrOrderLimited and when the bound lifts.
func TestWaitOrderDeadline(t *testing.T) {
	t.Parallel()
	m := &Manager{AcceptTOS: true, Issuers: []Issuer{{DirectoryURL: "https://ca.invalid/directory", MaxOrdersPerMinute: 1}}}
	st := m.state()
	t.Cleanup(func() { m.Close() })
	iss := st.issuers[0]
	ctx := context.Background()
	if err := m.waitOrder(ctx, iss, "a.example.com"); err != nil {
		t.Fatalf("first order: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := m.waitOrder(short, iss, "b.example.com")
	if !errors.Is(err, ErrOrderLimited) || time.Since(start) > time.Second {
		t.Fatalf("second order within a 50 ms deadline: %v after %v, want ErrOrderLimited at once", err, time.Since(start))
	}
	if until, ok := boundUntil(err); !ok || until.Sub(m.now()) < 50*time.Second {
		t.Errorf("the bound lifts at %v, want about a minute ahead", until)
	}
}

// The clock follows a CA's time beyond the tolerance, returns to the local
// one within it, ignores small moves, and does not follow a Date header
// more than a year off.
func TestClockMeasured(t *testing.T) {
	t.Parallel()
	local := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := clock{local: func() time.Time { return local }}
	steps := []struct {
		skew    time.Duration
		offset  time.Duration
		changed bool
	}{
		{30 * time.Second, 0, false},
		{40 * 24 * time.Hour, 40 * 24 * time.Hour, true},
		{40*24*time.Hour + 10*time.Second, 40 * 24 * time.Hour, false},
		{2 * 365 * 24 * time.Hour, 40 * 24 * time.Hour, false},
		{-5 * time.Minute, -5 * time.Minute, true},
		{time.Second, 0, true},
	}
	for i, s := range steps {
		off, changed := c.measured(s.skew)
		if off != s.offset || changed != s.changed {
			t.Errorf("step %d (skew %v): offset %v changed %v, want %v %v", i, s.skew, off, changed, s.offset, s.changed)
		}
		if got := c.now(); !got.Equal(local.Add(-s.offset)) {
			t.Errorf("step %d: now %v, want %v", i, got, local.Add(-s.offset))
		}
	}
	fixed := clock{local: func() time.Time { return local }, fixed: true}
	if off, changed := fixed.measured(40 * 24 * time.Hour); off != 0 || changed {
		t.Errorf("a fixed clock corrected by %v", off)
	}
}

// Records of names whose last certificate left its window are pruned as
// the records grow.
func TestNameOrdersPruned(t *testing.T) {
	t.Parallel()
	var o nameOrders
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 5000 {
		o.obtained(fmt.Sprintf("n%d.example.com", i), t0.Add(time.Duration(i)*time.Minute), 90*24*time.Hour)
	}
	// 5,000 minutes are more than three days: only the last day's names
	// can still be held, and pruning keeps the map near that.
	if n := len(o.names); n > 2*24*60+1024 {
		t.Errorf("%d records kept, want those of the last day (1,440) and at most the pruning slack", n)
	}
	if _, _, held := o.held("n4999.example.com", t0.Add(5000*time.Minute)); held {
		t.Error("a name with one certificate is held")
	}
}
