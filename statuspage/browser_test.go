package statuspage

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tlsmint/tlsmint/internal/testenv"
)

// chromiumPath is Debian's chromium package; .ci/run installs it.
const chromiumPath = "/usr/bin/chromium"

// browser starts headless Chromium for the test, or skips it.
func browser(t *testing.T) context.Context {
	t.Helper()
	testenv.File(t, "Chromium", chromiumPath, chromiumPath+" is missing (apt-get install chromium; .ci/run does)")
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	timeout, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	return timeout
}

// rendered is what the test reads from the page in the browser.
type rendered struct {
	Lang  string
	Title string
	Rows  []struct {
		Name, State, Left, Badge, Text string
	}
	// BadgeColors are the computed colours of each state's badge, proof
	// that the stylesheet was allowed by the Content-Security-Policy.
	BadgeColors map[string]string
	// Unlabelled lists svg and img elements without a text alternative.
	Unlabelled []string
	SVGTitle   string
	Headings   []string
	Text       string
}

const readPage = `(() => {
	const out = {Lang: document.documentElement.lang, Title: document.title, Rows: [], BadgeColors: {}, Unlabelled: [], Headings: []};
	for (const tr of document.querySelectorAll('#certificates tbody tr.cert')) {
		const left = tr.querySelector('.left');
		out.Rows.push({Name: tr.dataset.name, State: tr.dataset.state,
			Left: left ? left.innerText : '', Badge: tr.querySelector('.badge').innerText, Text: tr.innerText});
	}
	for (const b of document.querySelectorAll('#certificates .badge')) {
		const s = getComputedStyle(b);
		out.BadgeColors[b.innerText] = s.color + ' on ' + s.backgroundColor;
	}
	for (const el of document.querySelectorAll('svg, img')) {
		const labelled = el.getAttribute('aria-label') || el.getAttribute('alt') ||
			(el.getAttribute('aria-labelledby') || '').split(' ').some(id => id && document.getElementById(id) && document.getElementById(id).textContent.trim()) ||
			(el.querySelector(':scope > title') && el.querySelector(':scope > title').textContent.trim());
		if (!labelled) out.Unlabelled.push(el.outerHTML.slice(0, 80));
	}
	const svgTitle = document.querySelector('svg.timeline > title');
	out.SVGTitle = svgTitle ? svgTitle.textContent : '';
	for (const h of document.querySelectorAll('h1, h2, h3, h4, h5, h6')) out.Headings.push(h.tagName + ' ' + h.innerText);
	out.Text = document.body.innerText;
	return out;
})()`

// The page of a real fleet, in a real browser: it lists the healthy, the
// expiring and the failing certificate with their days left and states,
// its stylesheet applies under the page's CSP, and every graphic has a
// text alternative.
func TestBrowser(t *testing.T) {
	ctx := browser(t)
	m, trail, now := realFleet(t)
	srv := httptest.NewServer(&Handler{Manager: m, Audit: trail, Now: func() time.Time { return now }})
	defer srv.Close()

	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/status")); err != nil {
		t.Fatalf("navigating: %v", err)
	}
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](readPage))
	if err != nil {
		t.Fatalf("reading the page: %v", err)
	}
	var got rendered
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("decoding %s: %v", raw, err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	file := filepath.Join(t.ArtifactDir(), "statuspage.png")
	if err := os.WriteFile(file, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", file, len(shot))

	type want struct{ name, state, left string }
	wants := []want{
		{brokenName, "failing", ""},
		{soonName, "expiring", "1 day left"},
		{healthyName, "ok", "83 days left"},
	}
	if len(got.Rows) != len(wants) {
		t.Fatalf("got %d rows %+v, want %d", len(got.Rows), got.Rows, len(wants))
	}
	for i, w := range wants {
		r := got.Rows[i]
		if r.Name != w.name || r.State != w.state || r.Badge != w.state || r.Left != w.left {
			t.Errorf("row %d: got %s %s (badge %q) %q, want %s %s %q", i, r.Name, r.State, r.Badge, r.Left, w.name, w.state, w.left)
		}
	}
	if r := got.Rows[0]; !strings.Contains(r.Text, "no certificate") || !strings.Contains(r.Text, "forbidden domain") {
		t.Errorf("failing row reads %q, want no certificate and the CA's refusal", r.Text)
	}
	for state, colors := range map[string]string{
		"ok": "rgb(17, 99, 41) on rgb(218, 251, 225)", "expiring": "rgb(108, 68, 0) on rgb(255, 241, 184)",
		"failing": "rgb(164, 14, 38) on rgb(255, 235, 233)",
	} {
		if got.BadgeColors[state] != colors {
			t.Errorf("%s badge: got %q, want %q (is the stylesheet blocked?)", state, got.BadgeColors[state], colors)
		}
	}
	if got.Lang != "en" || !strings.HasPrefix(got.Title, DefaultTitle+" — 1 failing, 1 expiring, 1 ok") {
		t.Errorf("got lang %q, title %q", got.Lang, got.Title)
	}
	if len(got.Unlabelled) > 0 || got.SVGTitle == "" {
		t.Errorf("graphics without a text alternative: %q (timeline title %q)", got.Unlabelled, got.SVGTitle)
	}
	for _, w := range []string{"Recent ACME activity", "newOrder", "Rate limits", "certificates per registered domain", "example.com", "node-a", "node-b", "Timeline"} {
		if !strings.Contains(got.Text, w) {
			t.Errorf("the page's text lacks %q", w)
		}
	}
	// The watchdog's section comes before the ACME activity, whose
	// newest records are shown and the rest collapsed.
	served, activity := slices.Index(got.Headings, "H2 What clients are served"), slices.Index(got.Headings, "H2 Recent ACME activity")
	if served < 0 || activity < 0 || served > activity {
		t.Errorf("headings %q: want what clients are served before the ACME activity", got.Headings)
	}
	collapsed, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](`[document.querySelectorAll('#activity tbody tr').length,
		document.querySelector('#earlier') ? document.querySelectorAll('#activity-earlier tbody tr').length : -1,
		document.querySelector('#earlier') && document.querySelector('#earlier').open ? 1 : 0,
		document.querySelector('#earlier') ? document.querySelector('#earlier').getBoundingClientRect().height : -1]`))
	if err != nil {
		t.Fatalf("reading the activity: %v", err)
	}
	if collapsed[0] != activityShown || collapsed[1] < 1 || collapsed[2] != 0 || collapsed[3] < 0 || collapsed[3] > 50 {
		t.Errorf("activity: %v rows shown, %v collapsed, open %v, collapsed section %v px high; want %d shown and the rest collapsed to one line", collapsed[0], collapsed[1], collapsed[2], collapsed[3], activityShown)
	}
	if t.Failed() {
		t.Logf("headings %q\ntext:\n%s", got.Headings, got.Text)
	}
}
