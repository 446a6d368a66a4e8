package statuspage

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tlsmint/tlsmint/record"
)

// largeFleet is 300 certificates of which the failing ones expire last,
// far down the table, with long errors that repeat their names, and an
// issuer whose long host makes the table wider than the window.
func largeFleet() []record.Certificate {
	var infos []record.Certificate
	for i := range 300 {
		name := fmt.Sprintf("tenant-%03d.customers.example.com", i)
		c := cert(name, -time.Duration(i%60)*day, 90*day)
		c.Issuer = "https://acme.acertificateauthoritywithaverylonghostnameforthetablewidth.example/directory"
		if i%50 == 49 {
			c = cert(name, 0, 91*day)
			c.LastError = fmt.Sprintf("autotls: obtaining %s: acme: newOrder for %s: urn:ietf:params:acme:error:rejectedIdentifier: Cannot issue for %q: the CA refuses this name by policy", name, name, name)
			c.LastErrorAt, c.BackoffUntil = t0.Add(-time.Hour), t0.Add(time.Hour)
		}
		infos = append(infos, c)
	}
	return infos
}

// screen is what the tests read of the first screen.
type screen struct {
	Width, Height      int
	ScrollWidth        int
	TableWidth         float64
	Summary            box
	Failing            []box
	Legend             box
	LegendFont         float64
	TimelineTicks      []string
	TimelineRight      float64
	LastTickRight      float64
	ServedBeforeActive bool
}

type box struct {
	Top, Bottom, Left, Right float64
	Text                     string
}

const readScreen = `(() => {
	const b = el => { if (!el) return {Top: -1, Bottom: -1, Left: -1, Right: -1, Text: ''};
		const r = el.getBoundingClientRect(); return {Top: r.top, Bottom: r.bottom, Left: r.left, Right: r.right, Text: el.innerText}; };
	const out = {Width: window.innerWidth, Height: window.innerHeight, ScrollWidth: document.documentElement.scrollWidth,
		TableWidth: document.querySelector('#certificates').getBoundingClientRect().width,
		Summary: b(document.querySelector('#summary')), Failing: [], Legend: b(document.querySelector('#states-legend')),
		TimelineTicks: [], TimelineRight: 0, LastTickRight: 0};
	const legend = document.querySelector('#states-legend');
	out.LegendFont = legend ? parseFloat(getComputedStyle(legend).fontSize) : 0;
	for (const li of document.querySelectorAll('#attention li.st-failing')) out.Failing.push(b(li));
	const svg = document.querySelector('svg.timeline');
	if (svg) {
		out.TimelineRight = svg.getBoundingClientRect().right;
		const ticks = svg.querySelectorAll('text.tick');
		for (const t of ticks) out.TimelineTicks.push(t.textContent);
		if (ticks.length) out.LastTickRight = ticks[ticks.length - 1].getBoundingClientRect().right;
	}
	return out;
})()`

// TestFirstScreen: in a 1280×800 window, the first screen of a page of
// 300 certificates shows the summary and every failing certificate (they
// expire last, so the table lists them on a later page), the page does
// not scroll sideways although the table is wider than the window, the
// states' legend lies within the window at a readable size, and the
// timeline's last day label is not clipped. It saves the screenshot.
func TestFirstScreen(t *testing.T) {
	ctx := browser(t)
	srv := httptest.NewServer(synthetic(largeFleet(), nil))
	defer srv.Close()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800), chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatalf("navigating: %v", err)
	}
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	file := filepath.Join(t.ArtifactDir(), "first-screen.png")
	if err := os.WriteFile(file, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the first screen: %s", file)
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](readScreen))
	if err != nil {
		t.Fatalf("reading the page: %v", err)
	}
	var s screen
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("decoding %s: %v", raw, err)
	}
	if s.Width != 1280 || s.Height != 800 {
		t.Fatalf("window %dx%d, want 1280x800", s.Width, s.Height)
	}
	if s.Summary.Top < 0 || s.Summary.Bottom > 800 || !strings.Contains(s.Summary.Text, "6 failing") {
		t.Errorf("summary at %+v, want within the first screen with the failing count", s.Summary)
	}
	if len(s.Failing) != 6 {
		t.Fatalf("%d failing certificates need attention, want 6", len(s.Failing))
	}
	for _, f := range s.Failing {
		if f.Top < 0 || f.Bottom > 800 || f.Right > 1280 {
			t.Errorf("failing certificate %q at %+v: not on the first screen", f.Text, f)
		}
		if strings.Count(f.Text, "customers.example.com") != 1 {
			t.Errorf("failing certificate reads %q, want its name once", f.Text)
		}
	}
	if s.TableWidth <= 1280 {
		t.Errorf("the table is %v px wide: the test wants it wider than the window", s.TableWidth)
	}
	if s.ScrollWidth > 1280 {
		t.Errorf("the page scrolls sideways: %d px wide", s.ScrollWidth)
	}
	if s.Legend.Left < 0 || s.Legend.Right > 1280 || s.Legend.Top < 0 || s.LegendFont < 12 || !strings.Contains(s.Legend.Text, "expiring") {
		t.Errorf("the states' legend at %+v, %v px: want within the window, readable", s.Legend, s.LegendFont)
	}
	if len(s.TimelineTicks) == 0 || s.LastTickRight > s.TimelineRight+0.5 {
		t.Errorf("timeline ticks %q, the last ends at %v past the drawing's %v", s.TimelineTicks, s.LastTickRight, s.TimelineRight)
	}
}
