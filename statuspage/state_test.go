package statuspage

import (
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/record"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

// cert is a certificate issued at t0+from lasting life.
func cert(name string, from, life time.Duration) record.Certificate {
	nb := t0.Add(from)
	return record.Certificate{
		Name: name, Names: []string{name}, Issuer: "https://ca.example/dir", Serial: "0a1b",
		NotBefore: nb, NotAfter: nb.Add(life), RenewAt: nb.Add(life * 2 / 3), RenewReason: autotls.ReasonSchedule,
		Stored: true, InMemory: true, Managed: true,
	}
}

func TestStateOf(t *testing.T) {
	with := func(c record.Certificate, f func(*record.Certificate)) record.Certificate {
		f(&c)
		return c
	}
	failed := func(c *record.Certificate) {
		c.LastError, c.LastErrorAt, c.BackoffUntil = "acme: rateLimited", t0.Add(-time.Minute), t0.Add(time.Hour)
	}
	for _, tc := range []struct {
		name string
		info record.Certificate
		want State
	}{
		{"fresh 90 days", cert("a", -day, 90*day), StateOK},
		{"90 days, 31 days left", cert("a", -59*day, 90*day), StateOK},
		{"90 days, 29 days left", cert("a", -61*day, 90*day), StateExpiring},
		// The Manager's deadline, whatever the rule that made it.
		{"RenewBy ahead, 20 days left", with(cert("a", -70*day, 90*day), func(c *record.Certificate) {
			c.RenewReason, c.RenewAt, c.RenewBy = autotls.ReasonARI, t0.Add(-time.Hour), t0.Add(time.Hour)
		}), StateOK},
		{"RenewBy passed, 40 days left", with(cert("a", -50*day, 90*day), func(c *record.Certificate) {
			c.RenewReason, c.RenewAt, c.RenewBy = autotls.ReasonARI, t0.Add(-2*time.Hour), t0.Add(-time.Hour)
		}), StateExpiring},
		{"RenewBy at now", with(cert("a", -50*day, 90*day), func(c *record.Certificate) { c.RenewBy = t0 }), StateOK},
		// Another source's certificate: the deadline the Manager would
		// work to, from its validity and ARI window.
		{"no RenewBy, ARI window ahead, 20 days left", with(cert("a", -70*day, 90*day), func(c *record.Certificate) {
			c.ARIWindowStart, c.ARIWindowEnd = t0.Add(5*day), t0.Add(6*day)
		}), StateOK},
		{"no RenewBy, ARI window ahead, 8 days left", with(cert("a", -82*day, 90*day), func(c *record.Certificate) {
			c.ARIWindowStart, c.ARIWindowEnd = t0.Add(time.Hour), t0.Add(2*time.Hour)
		}), StateExpiring},
		{"no RenewBy, ARI window passed, 40 days left", with(cert("a", -50*day, 90*day), func(c *record.Certificate) {
			c.ARIWindowStart, c.ARIWindowEnd = t0.Add(-2*day), t0.Add(-day)
		}), StateExpiring},
		{"6 days, 4 days left", cert("a", -2*day, 6*day), StateOK},
		{"6 days, 2 days left", cert("a", -4*day, 6*day), StateExpiring},
		{"45 days, 16 days left", cert("a", -29*day, 45*day), StateOK},
		{"45 days, 14 days left", cert("a", -31*day, 45*day), StateExpiring},
		{"expired", cert("a", -91*day, 90*day), StateExpired},
		{"expires at now", cert("a", -90*day, 90*day), StateExpired},
		{"expired and failing", with(cert("a", -91*day, 90*day), failed), StateExpired},
		{"revoked", with(cert("a", -day, 90*day), func(c *record.Certificate) { c.Revoked = true }), StateRevoked},
		{"revoked and expired", with(cert("a", -91*day, 90*day), func(c *record.Certificate) { c.Revoked = true }), StateRevoked},
		{"failing renewal, backing off", with(cert("a", -70*day, 90*day), failed), StateFailing},
		{"failing renewal, back-off over", with(cert("a", -70*day, 90*day), func(c *record.Certificate) {
			failed(c)
			c.BackoffUntil = time.Time{}
		}), StateFailing},
		{"no certificate, failing", record.Certificate{Name: "a", LastError: "acme: rejectedIdentifier"}, StateFailing},
		{"no certificate yet", record.Certificate{Name: "a", Managed: true}, StatePending},
		{"lifetime unknown, no deadline", record.Certificate{Name: "a", NotAfter: t0.Add(day)}, StateOK},
		{"lifetime unknown, RenewBy passed", record.Certificate{Name: "a", NotAfter: t0.Add(8 * day), RenewBy: t0.Add(-time.Second)}, StateExpiring},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := stateOf(tc.info, t0); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestDaysLeft(t *testing.T) {
	for _, tc := range []struct {
		left time.Duration
		want int
	}{
		{90 * day, 90},
		{90*day - time.Second, 89},
		{day + time.Hour, 1},
		{23 * time.Hour, 0},
		{0, 0},
		{-time.Hour, -1},
		{-day, -1},
		{-day - time.Second, -2},
	} {
		if got := daysLeft(t0.Add(tc.left), t0); got != tc.want {
			t.Errorf("daysLeft(%v): got %d, want %d", tc.left, got, tc.want)
		}
	}
}

func TestLeftText(t *testing.T) {
	for _, tc := range []struct {
		notAfter time.Time
		want     string
	}{
		{t0.Add(83*day + time.Hour), "83 days left"},
		{t0.Add(day + time.Hour), "1 day left"},
		{t0.Add(5*time.Hour + time.Minute), "5 hours left"},
		{t0.Add(90 * time.Second), "1 minute left"},
		{t0.Add(-2*day - time.Hour), "expired 2 days ago"},
		{time.Time{}, "no certificate"},
	} {
		c := certificateOf(record.Certificate{NotAfter: tc.notAfter}, t0)
		if got := leftText(c, t0); got != tc.want {
			t.Errorf("leftText(%v): got %q, want %q", tc.notAfter, got, tc.want)
		}
	}
}
