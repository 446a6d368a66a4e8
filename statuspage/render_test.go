package statuspage

import (
	"testing"
	"time"
)

// TestDayTicks: the timeline's axis marks every day it spans, labels
// days no closer than tlLabelGap, and labels its last day, drawn
// leftwards so that the drawing does not clip it.
func TestDayTicks(t *testing.T) {
	for _, tc := range []struct {
		name  string
		days  int
		plotW float64
	}{
		{"ten days", 10, 674},
		{"a quarter", 95, 674},
		{"a year", 400, 674},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
			end := start.Add(time.Duration(tc.days) * 24 * time.Hour)
			span := end.Sub(start).Seconds()
			x := func(tt time.Time) float64 { return tc.plotW * tt.Sub(start).Seconds() / span }
			ticks := dayTicks(start, end, tc.plotW, x)
			if len(ticks) != tc.days {
				t.Fatalf("%d day marks, want %d (one per midnight)", len(ticks), tc.days)
			}
			lastX := -1e9
			for i, tk := range ticks {
				if tk.Label == "" {
					continue
				}
				if tk.X-lastX < tlLabelGap {
					t.Errorf("label %d (%s) %v after the one before, want at least %v", i, tk.Label, tk.X-lastX, tlLabelGap)
				}
				lastX = tk.X
			}
			last := ticks[len(ticks)-1]
			if want := end.Truncate(24 * time.Hour).Format("Jan 2"); last.Label != want || !last.End {
				t.Errorf("last mark %+v, want labelled %s, drawn leftwards", last, want)
			}
		})
	}
}

// TestHostOnce: an error shown beside its certificate's name leaves out
// the name wherever the chain repeats it.
func TestHostOnce(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"a.example.com", `autotls: obtaining a.example.com: acme: newOrder for a.example.com: Cannot issue for "a.example.com": forbidden`,
			`autotls: obtaining: acme: newOrder: Cannot issue: forbidden`},
		{"a.example.com", `acme: rejectedIdentifier: forbidden by policy: "a.example.com" (HTTP 400); subproblems: rejectedIdentifier: a.example.com is a forbidden domain [a.example.com]`,
			`acme: rejectedIdentifier: forbidden by policy (HTTP 400); subproblems: rejectedIdentifier: is a forbidden domain`},
		{"a.example.com", "acme: rateLimited: too many certificates", "acme: rateLimited: too many certificates"},
		{"", "anything a.example.com", "anything a.example.com"},
	} {
		if got := hostOnce(tc.name, tc.in); got != tc.want {
			t.Errorf("hostOnce(%q, %q) = %q, want %q", tc.name, tc.in, got, tc.want)
		}
	}
}
