package statuspage

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tlsmint/tlsmint/audit"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/record"
)

// The page's template and stylesheet. The stylesheet is inlined into the
// page and allowed by its hash in the Content-Security-Policy, so the page
// needs no second request and loads nothing from anywhere.
var (
	//go:embed page.html
	pageHTML string
	//go:embed page.css
	pageCSS string
)

// stylePlaceholder is where page.html takes the stylesheet.
const stylePlaceholder = "/*page.css*/"

// page is the parsed template of a Handler.
type page struct {
	tmpl *template.Template
	// styleHash is the CSP source of the inline stylesheet.
	styleHash string
}

func newPage() (*page, error) {
	sum := sha256.Sum256([]byte(pageCSS))
	text := strings.Replace(pageHTML, stylePlaceholder, pageCSS, 1)
	t, err := template.New("page").Funcs(template.FuncMap{
		"time":     formatTime,
		"iso":      func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"rel":      relText,
		"left":     leftText,
		"reason":   reasonText,
		"host":     issuerHost,
		"usage":    usageText,
		"seconds":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"duration": func(s int64) string { return durationText(time.Duration(s) * time.Second) },
		"ms":       func(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) },
		"join":     strings.Join,
		"where":    whereText,
		"after":    func(a, b time.Time) bool { return a.After(b) },
		"hostonce": hostOnce,
	}).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("statuspage: parsing the template: %w", err)
	}
	return &page{tmpl: t, styleHash: "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"}, nil
}

// view is what the template renders.
type view struct {
	*Status
	Timeline timeline
	// Summary counts the certificates per state, the worst first, leaving
	// out states without any, each with the link to its page.
	Summary []stateCount
	// Audit reports whether an audit trail was given.
	Audit bool
	// Refresh is the meta refresh in seconds, zero for none.
	Refresh int
	// Rows are the table's certificates: the page.
	Rows []Certificate
	// NextURL and FirstURL link to the next page and back to the first
	// (empty on the last and on the first page); AllURL to every state.
	NextURL, FirstURL, AllURL string
	// Activity is the newest activityShown records of the audit trail;
	// Earlier the rest, collapsed.
	Activity, Earlier []record.Audit
	// All is the number of certificates in every state.
	All int
}

// activityShown is the number of audit records the page shows before the
// rest, which are collapsed.
const activityShown = 5

type stateCount struct {
	State State
	N     int
	Link  string
}

func (p *page) render(w io.Writer, st *Status, refresh time.Duration, withAudit bool, q Query) error {
	v := view{Status: st, Timeline: newTimeline(st.Certificates, st.Now), Audit: withAudit, Rows: st.Certificates}
	for _, n := range st.Counts {
		v.All += n
	}
	v.Activity = st.Activity[:min(len(st.Activity), activityShown)]
	v.Earlier = st.Activity[len(v.Activity):]
	if refresh > 0 {
		v.Refresh = max(int(refresh/time.Second), 1)
	}
	for _, s := range []State{StateRevoked, StateExpired, StateFailing, StateExpiring, StatePending, StateOK} {
		if n := st.Counts[s]; n > 0 {
			v.Summary = append(v.Summary, stateCount{s, n, pageURL(Query{State: s, Limit: q.Limit})})
		}
	}
	if st.Next != "" {
		v.NextURL = pageURL(Query{State: q.State, Limit: q.Limit, After: st.Next})
	}
	if q.After != "" {
		v.FirstURL = pageURL(Query{State: q.State, Limit: q.Limit})
	}
	if q.State != "" {
		v.AllURL = pageURL(Query{Limit: q.Limit})
	}
	return p.tmpl.Execute(w, v)
}

// pageURL is the relative URL of page q.
func pageURL(q Query) string {
	v := url.Values{}
	if q.State != "" {
		v.Set("state", string(q.State))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.After != "" {
		v.Set("after", q.After)
	}
	if len(v) == 0 {
		return "?"
	}
	return "?" + v.Encode()
}

// hostOnce shows the error of a certificate whose row names it already:
// error chains name the host at each layer ("obtaining example.com: … for
// "example.com": … example.com: …"), so every mention of name in text
// is left out, with the " for " or quotes around it.
func hostOnce(name, text string) string {
	if name == "" || !strings.Contains(text, name) {
		return text
	}
	for _, pat := range []string{
		` for "` + name + `"`, ` for ` + name, `: "` + name + `"`, ` "` + name + `"`, `"` + name + `"`,
		` [` + name + `]`, ` (` + name + `)`, ` ` + name, name,
	} {
		text = strings.ReplaceAll(text, pat, "")
	}
	return text
}

// formatTime shows a time in UTC to the minute; the zero time as a dash.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// leftText says how long a certificate has left at now, in words.
func leftText(c Certificate, now time.Time) string {
	if c.NotAfter.IsZero() {
		return "no certificate"
	}
	d := c.NotAfter.Sub(now)
	if d <= 0 {
		return "expired " + durationText(-d) + " ago"
	}
	if d >= 24*time.Hour {
		return plural(c.DaysLeft, "day") + " left"
	}
	return durationText(d) + " left"
}

// relText says when t is relative to now: "in 3 days", "2 hours ago".
func relText(t, now time.Time) string {
	if t.IsZero() {
		return "—"
	}
	d := t.Sub(now)
	switch {
	case d > 0:
		return "in " + durationText(d)
	case d < 0:
		return durationText(-d) + " ago"
	}
	return "now"
}

// durationText rounds d down to its largest unit: days, hours or minutes.
func durationText(d time.Duration) string {
	switch {
	case d >= 24*time.Hour:
		return plural(int(d/(24*time.Hour)), "day")
	case d >= time.Hour:
		return plural(int(d/time.Hour), "hour")
	case d >= time.Minute:
		return plural(int(d/time.Minute), "minute")
	}
	return "under a minute"
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// reasonText explains a renewal reason.
func reasonText(reason string) string {
	switch reason {
	case autotls.ReasonSchedule:
		return "the Manager's schedule"
	case autotls.ReasonARI:
		return "in the CA's ARI window"
	case autotls.ReasonARIPast:
		return "the CA's ARI window has begun: renewing now"
	case "":
		return "—"
	}
	return reason
}

// usageText names a rate limit.
func usageText(kind string) string {
	switch kind {
	case audit.UsageNewOrders:
		return "new orders per account"
	case audit.UsageCertificates:
		return "certificates per registered domain"
	}
	return kind
}

// whereText says where a certificate is kept and whether it is managed.
func whereText(c Certificate) string {
	var parts []string
	switch {
	case c.Stored:
		parts = append(parts, "stored")
	case !c.NotAfter.IsZero():
		parts = append(parts, "not stored")
	}
	if c.InMemory {
		parts = append(parts, "in memory")
	}
	if c.Managed {
		parts = append(parts, "managed")
	}
	return strings.Join(parts, ", ")
}
