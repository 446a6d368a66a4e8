package statuspage

import (
	"fmt"
	"math"
	"time"
)

// Geometry of the timeline, in SVG user units.
const (
	tlWidth    = 960.0
	tlLabelW   = 270.0 // the names' column
	tlRight    = 16.0  // margin right of the plot
	tlTop      = 30.0  // the ticks' row
	tlRowH     = 24.0
	tlBarH     = 12.0
	tlMaxRows  = 40 // certificates drawn, the soonest first
	tlMaxLabel = 36 // characters of a name drawn
	// tlLabelGap is the least distance between two day labels; a label
	// is about 40 units wide.
	tlLabelGap = 56.0
)

// timeline is the SVG drawing of expiries and renewals, computed here so
// that the template only places numbers.
type timeline struct {
	Width, Height float64
	PlotX, PlotW  float64
	NowX          float64
	Ticks         []tick
	Rows          []row
	// Shown and Total count the certificates drawn and listed.
	Shown, Total int
}

// tick is one day of the axis, at its midnight (UTC): a mark, and a
// label on every step-th day and on the last (End: drawn leftwards of its
// mark, so that it is not clipped at the right edge).
type tick struct {
	X     float64
	Label string
	End   bool
}

type row struct {
	Y, TextY, BarY float64
	Label          string
	State          State
	Title          string
	// NoCert: nothing to draw but the label and a note.
	NoCert bool
	// The validity bar.
	BarX, BarW float64
	// The CA's ARI window, if any.
	ARI        bool
	ARIX, ARIW float64
	// The planned renewal, if any.
	Renew  bool
	RenewX float64
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }

// newTimeline lays out the first tlMaxRows certificates of certs (sorted
// as Status sorts them) on a time axis around now.
func newTimeline(certs []Certificate, now time.Time) timeline {
	n := min(len(certs), tlMaxRows)
	shown := certs[:n]
	start, end := now, now.Add(24*time.Hour)
	for _, c := range shown {
		if c.NotAfter.IsZero() {
			continue
		}
		if c.NotBefore.Before(start) && !c.NotBefore.IsZero() {
			start = c.NotBefore
		}
		for _, t := range []time.Time{c.NotAfter, c.RenewAt, c.ARIWindowEnd} {
			if t.After(end) {
				end = t
			}
		}
	}
	// Keep the axis readable when one certificate is far off.
	start = maxTime(start, now.Add(-100*24*time.Hour))
	end = minTime(end, now.Add(400*24*time.Hour))
	tl := timeline{
		Width: tlWidth, PlotX: tlLabelW, PlotW: tlWidth - tlLabelW - tlRight,
		Shown: n, Total: len(certs),
	}
	tl.Height = tlTop + float64(max(n, 1))*tlRowH + 8
	span := end.Sub(start).Seconds()
	x := func(t time.Time) float64 {
		t = maxTime(minTime(t, end), start)
		return round1(tl.PlotX + tl.PlotW*t.Sub(start).Seconds()/span)
	}
	tl.NowX = x(now)
	tl.Ticks = dayTicks(start, end, tl.PlotW, x)
	for i, c := range shown {
		y := tlTop + float64(i)*tlRowH
		r := row{
			Y: y, TextY: y + tlRowH/2 + 4, BarY: y + (tlRowH-tlBarH)/2,
			Label: clipLabel(c.Name), State: c.State,
		}
		if c.NotAfter.IsZero() {
			r.NoCert = true
			r.Title = fmt.Sprintf("%s: %s, no certificate", c.Name, c.State)
			tl.Rows = append(tl.Rows, r)
			continue
		}
		r.BarX = x(c.NotBefore)
		r.BarW = max(round1(x(c.NotAfter)-r.BarX), 2)
		r.Title = fmt.Sprintf("%s: %s, expires %s (%s)", c.Name, c.State, formatTime(c.NotAfter), leftText(c, now))
		if !c.RenewAt.IsZero() {
			r.Renew, r.RenewX = true, x(c.RenewAt)
			r.Title += fmt.Sprintf(", renewal %s (%s)", formatTime(c.RenewAt), reasonText(c.RenewReason))
		}
		if !c.ARIWindowStart.IsZero() && !c.ARIWindowEnd.IsZero() {
			r.ARI = true
			r.ARIX = x(c.ARIWindowStart)
			r.ARIW = max(round1(x(c.ARIWindowEnd)-r.ARIX), 2)
			r.Title += fmt.Sprintf(", ARI window %s to %s", formatTime(c.ARIWindowStart), formatTime(c.ARIWindowEnd))
		}
		tl.Rows = append(tl.Rows, r)
	}
	return tl
}

// dayTicks marks every day (UTC midnight) from start to end on the axis
// of width plotW that x maps times to: labels on every step-th day, the
// step the shortest of 1, 2, 7, 14, 30 or 60 days that leaves tlLabelGap
// between labels, and on the last day, for which the label before it
// makes way when too close.
func dayTicks(start, end time.Time, plotW float64, x func(time.Time) float64) []tick {
	const day = 24 * time.Hour
	first := start.UTC().Truncate(day)
	if first.Before(start) {
		first = first.Add(day)
	}
	perDay := plotW * float64(day) / float64(end.Sub(start))
	step := 60
	for _, s := range []int{1, 2, 7, 14, 30, 60} {
		if float64(s)*perDay >= tlLabelGap {
			step = s
			break
		}
	}
	var ticks []tick
	lastLabel := -1
	for i := 0; ; i++ {
		t := first.Add(time.Duration(i) * day)
		if t.After(end) {
			break
		}
		tk := tick{X: x(t)}
		if i%step == 0 {
			tk.Label = t.Format("Jan 2")
			lastLabel = len(ticks)
		}
		ticks = append(ticks, tk)
	}
	if n := len(ticks); n > 0 {
		last := &ticks[n-1]
		if lastLabel >= 0 && lastLabel != n-1 && last.X-ticks[lastLabel].X < tlLabelGap {
			ticks[lastLabel].Label = ""
		}
		last.Label = first.Add(time.Duration(n-1) * day).Format("Jan 2")
		last.End = true
	}
	return ticks
}

func clipLabel(s string) string {
	r := []rune(s)
	if len(r) <= tlMaxLabel {
		return s
	}
	return string(r[:tlMaxLabel-1]) + "…"
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
