package statuspage

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/audit"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/storage"
)

// trio is the synthetic set: one healthy, one expiring soon, one failing,
// plus an expired one and a pending one, in no particular order.
func trio() []record.Certificate {
	healthy := cert("healthy.example.com", -7*day, 90*day)
	soon := cert("soon.example.com", -85*day, 90*day)
	failing := cert("failing.example.com", -65*day, 90*day)
	failing.LastError = "acme: urn:ietf:params:acme:error:rateLimited: too many certificates"
	failing.LastErrorAt, failing.BackoffUntil = t0.Add(-10*time.Minute), t0.Add(50*time.Minute)
	expired := cert("expired.example.com", -100*day, 90*day)
	pending := record.Certificate{Name: "new.example.com", Issuer: "https://ca.example/dir", Managed: true}
	return []record.Certificate{healthy, soon, failing, pending, expired}
}

// synthetic returns a Handler over infos at t0.
func synthetic(infos []record.Certificate, err error) *Handler {
	return &Handler{
		Now:    func() time.Time { return t0 },
		source: func(context.Context) ([]record.Certificate, error) { return infos, err },
	}
}

func decodeStatus(t *testing.T, w *httptest.ResponseRecorder) Status {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("got status %d (%q), want 200", w.Code, w.Body.String())
	}
	var st Status
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil {
		t.Fatalf("decoding the JSON: %v", err)
	}
	return st
}

func TestSortedByExpiryWithStates(t *testing.T) {
	st := decodeStatus(t, get(t, synthetic(trio(), nil), "/?format=json", nil))
	type nameState struct {
		Name  string
		State State
		Days  int
	}
	var got []nameState
	for _, c := range st.Certificates {
		got = append(got, nameState{c.Name, c.State, c.DaysLeft})
	}
	want := []nameState{
		{"new.example.com", StatePending, 0},
		{"expired.example.com", StateExpired, -10},
		{"soon.example.com", StateExpiring, 5},
		{"failing.example.com", StateFailing, 25},
		{"healthy.example.com", StateOK, 83},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	wantCounts := map[State]int{StateOK: 1, StateExpiring: 1, StateFailing: 1, StateExpired: 1, StatePending: 1}
	if !mapsEqual(st.Counts, wantCounts) {
		t.Errorf("got counts %v, want %v", st.Counts, wantCounts)
	}
	if !st.Now.Equal(t0) || st.Title != DefaultTitle {
		t.Errorf("got now %v, title %q, want %v, %q", st.Now, st.Title, t0, DefaultTitle)
	}
}

func mapsEqual(a, b map[State]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestHTMLShowsEveryCertificate(t *testing.T) {
	w := get(t, synthetic(trio(), nil), "/", nil)
	body := w.Body.String()
	for _, want := range []string{
		`data-name="healthy.example.com" data-state="ok"`,
		`data-name="soon.example.com" data-state="expiring"`,
		`data-name="failing.example.com" data-state="failing"`,
		`data-name="expired.example.com" data-state="expired"`,
		`data-name="new.example.com" data-state="pending"`,
		"83 days left", "5 days left", "expired 10 days ago",
		"too many certificates", "backing off until", "2026-12-01 12:50 UTC",
		"the Manager&#39;s schedule", "ca.example",
		`<svg class="timeline" role="img"`,
		"<title>healthy.example.com: ok, expires 2027-02-22 12:00 UTC (83 days left)",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(body, `id="activity"`) {
		t.Errorf("the page has an activity section without an audit trail")
	}
}

// Names and CA error texts are hostile input: nothing of them may become
// markup, in HTML or in JSON.
func TestEscaping(t *testing.T) {
	const evilName = `<script>alert("name")</script>.example.com`
	infos := []record.Certificate{cert(evilName, -day, 90*day), cert("ok.example.com", -day, 90*day)}
	infos[0].Names = []string{evilName, `"><img src=x onerror=alert(1)>`}
	infos[1].LastError = `</td><script>alert('ca')</script>&lt;`
	infos[1].LastErrorAt = t0
	infos[1].ARIWindowStart, infos[1].ARIWindowEnd = t0.Add(day), t0.Add(2*day)
	infos[1].ARIExplanationURL = `javascript:alert(1)`
	infos[0].ARIWindowStart, infos[0].ARIWindowEnd = t0.Add(day), t0.Add(2*day)
	infos[0].ARIExplanationURL = `https://ca.example/why?a=1&b="x"`
	h := synthetic(infos, errors.New(`storage: <b>bold</b>`))
	h.Title = `<i>title</i>`

	body := get(t, h, "/", nil).Body.String()
	for _, bad := range []string{"<script", "<img", "<i>", "<b>bold", "javascript:", `"x"`, "</td><"} {
		if strings.Contains(body, bad) {
			t.Errorf("the page contains %q", bad)
		}
	}
	for _, want := range []string{
		"&lt;script&gt;alert(&#34;name&#34;)&lt;/script&gt;.example.com",
		"&lt;/td&gt;&lt;script&gt;alert(&#39;ca&#39;)&lt;/script&gt;&amp;lt;",
		"&lt;i&gt;title&lt;/i&gt;", "storage: &lt;b&gt;bold&lt;/b&gt;",
		`href="https://ca.example/why?a=1&amp;b=%22x%22"`, `href="#ZgotmplZ"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}

	js := get(t, h, "/?format=json", nil).Body.String()
	if strings.Contains(js, "<") || strings.Contains(js, ">") {
		t.Errorf("the JSON holds a raw < or >: %s", js)
	}
	st := decodeStatus(t, get(t, h, "/?format=json", nil))
	if len(st.Certificates) != 2 || !slices.ContainsFunc(st.Certificates, func(c Certificate) bool { return c.Name == evilName }) {
		t.Errorf("got certificates %+v, want the hostile name intact in JSON", st.Certificates)
	}
	if len(st.Errors) != 1 || st.Errors[0] != `storage: <b>bold</b>` {
		t.Errorf("got errors %q, want the storage error", st.Errors)
	}
}

func TestAuthorize(t *testing.T) {
	refuse := func(*http.Request) error { return errors.New("no") }
	allow := func(*http.Request) error { return nil }
	for _, tc := range []struct {
		name      string
		remote    string
		authorize func(*http.Request) error
		want      int
	}{
		{"IPv4 loopback", "127.0.0.1:40000", nil, 200},
		{"other 127/8 address", "127.3.2.1:40000", nil, 200},
		{"IPv6 loopback", "[::1]:40000", nil, 200},
		{"IPv4-mapped loopback", "[::ffff:127.0.0.1]:40000", nil, 200},
		{"public IPv4", "203.0.113.9:40000", nil, 403},
		{"private IPv4", "10.0.0.7:40000", nil, 403},
		{"public IPv6", "[2001:db8::1]:40000", nil, 403},
		{"unspecified", "0.0.0.0:40000", nil, 403},
		{"no port", "127.0.0.1", nil, 200},
		{"garbage", "localhost:80", nil, 403},
		{"empty", "", nil, 403},
		{"authorizer allows a public client", "203.0.113.9:40000", allow, 200},
		{"authorizer refuses loopback", "127.0.0.1:40000", refuse, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := synthetic(trio(), nil)
			h.Authorize = tc.authorize
			for _, target := range []string{"/", "/?format=json"} {
				r := httptest.NewRequest(http.MethodGet, target, nil)
				r.RemoteAddr = tc.remote
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != tc.want {
					t.Fatalf("%s: got status %d, want %d", target, w.Code, tc.want)
				}
				if tc.want == 403 {
					if body := w.Body.String(); body != "forbidden\n" {
						t.Errorf("%s: got body %q, want only %q", target, body, "forbidden\n")
					}
					if got := w.Header().Get("Cache-Control"); got != "no-store" {
						t.Errorf("%s: got Cache-Control %q, want no-store", target, got)
					}
				}
			}
		})
	}
}

func TestContentNegotiation(t *testing.T) {
	const browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	for _, tc := range []struct {
		target, accept string
		want           string // content type, or "400"
	}{
		{"/", "", "text/html"},
		{"/", "*/*", "text/html"},
		{"/", browser, "text/html"},
		{"/", "application/json", "application/json"},
		{"/", "application/json, text/html;q=0.5", "application/json"},
		{"/", "text/html;q=0.5, application/json;q=0.9", "application/json"},
		{"/", "text/html, application/json", "text/html"},
		{"/", "application/*", "application/json"},
		{"/", "application/json;q=0, */*", "text/html"},
		{"/", "text/plain", "text/html"},
		{"/?format=json", browser, "application/json"},
		{"/?format=html", "application/json", "text/html"},
		{"/?format=xml", "", "400"},
		{"/?format=" + strings.Repeat("%1b%5b2J", 20000), "", "400"}, // echoed clipped and quoted
	} {
		h := http.Header{}
		if tc.accept != "" {
			h.Set("Accept", tc.accept)
		}
		w := get(t, synthetic(trio(), nil), tc.target, h)
		got := strings.Split(w.Header().Get("Content-Type"), ";")[0]
		if tc.want == "400" {
			if w.Code != 400 {
				t.Errorf("%.40s Accept %q: got %d %s, want 400", tc.target, tc.accept, w.Code, got)
			}
			if b := w.Body.String(); len(b) > 256 || strings.Contains(b, "\x1b") {
				t.Errorf("%.40s: the 400 says %d bytes: %.300q, want a short message with the format quoted", tc.target, len(b), b)
			}
			continue
		}
		if w.Code != 200 || got != tc.want {
			t.Errorf("%s Accept %q: got %d %s, want 200 %s", tc.target, tc.accept, w.Code, got, tc.want)
		}
		if tc.want == "application/json" && !json.Valid(w.Body.Bytes()) {
			t.Errorf("%s Accept %q: the body is not JSON", tc.target, tc.accept)
		}
		if v := w.Header().Get("Vary"); v != "Accept" {
			t.Errorf("%s: got Vary %q, want Accept", tc.target, v)
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	for _, target := range []string{"/", "/?format=json"} {
		w := get(t, synthetic(trio(), nil), target, nil)
		for k, want := range map[string]string{
			"X-Content-Type-Options": "nosniff",
			"Cache-Control":          "no-store",
			"Referrer-Policy":        "no-referrer",
			"X-Frame-Options":        "DENY",
		} {
			if got := w.Header().Get(k); got != want {
				t.Errorf("%s: got %s %q, want %q", target, k, got, want)
			}
		}
		csp := w.Header().Get("Content-Security-Policy")
		if !strings.HasPrefix(csp, "default-src 'none';") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: got CSP %q, want default-src 'none' and frame-ancestors 'none'", target, csp)
		}
	}
	// The inline stylesheet is the one the policy's hash allows, and the
	// page has no script, no style attribute and no external reference.
	w := get(t, synthetic(trio(), nil), "/", nil)
	body := w.Body.String()
	m := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindAllStringSubmatch(body, -1)
	if len(m) != 1 {
		t.Fatalf("got %d style elements, want 1", len(m))
	}
	sum := sha256.Sum256([]byte(m[0][1]))
	want := "style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	if csp := w.Header().Get("Content-Security-Policy"); !strings.HasSuffix(csp, "; "+want) {
		t.Errorf("got CSP %q, want it to end with %q", csp, want)
	}
	for _, bad := range []string{"<script", " style=", "<link", "<img", "<iframe", "<object", "src=", "url("} {
		if strings.Contains(body, bad) {
			t.Errorf("the page contains %q", bad)
		}
	}
}

func TestMethods(t *testing.T) {
	h := synthetic(trio(), nil)
	for _, tc := range []struct {
		method string
		want   int
		body   bool
	}{
		{http.MethodGet, 200, true},
		{http.MethodHead, 200, false},
		{http.MethodPost, 405, false},
		{http.MethodDelete, 405, false},
	} {
		r := httptest.NewRequest(tc.method, "/", nil)
		r.RemoteAddr = "127.0.0.1:1"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("%s: got %d, want %d", tc.method, w.Code, tc.want)
		}
		if has := strings.Contains(w.Body.String(), "healthy.example.com"); has != tc.body {
			t.Errorf("%s: got data in the body %v, want %v", tc.method, has, tc.body)
		}
	}
}

// Without a Manager the page says so instead of failing.
func TestNoManager(t *testing.T) {
	st := decodeStatus(t, get(t, &Handler{}, "/?format=json", nil))
	if len(st.Certificates) != 0 || len(st.Errors) != 1 || !strings.Contains(st.Errors[0], "Manager is nil") {
		t.Errorf("got %+v, want no certificates and the error", st)
	}
}

// The watchdog's findings from the audit trail: the newest per endpoint
// and name, problems first, in the JSON and the HTML.
func TestServedSection(t *testing.T) {
	trail := &audit.Log{Storage: storage.NewMemory(), Node: "node-a"}
	defer trail.Close()
	probe := func(at time.Duration, target, name, outcome, problem string) {
		trail.Add(record.Audit{Time: t0.Add(at), Kind: record.KindProbe, Outcome: outcome, Operation: "probe",
			Target: target, Names: []string{name}, Serial: "01ab", NotAfter: t0.Add(30 * day), Problem: problem})
	}
	probe(-3*time.Hour, "10.0.0.1:443", "a.example.com", record.OutcomeFailure, "not_manager_certificate")
	probe(-2*time.Hour, "10.0.0.1:443", "a.example.com", record.OutcomeOK, "") // recovered
	probe(-time.Hour, "10.0.0.2:443", "b.example.com", record.OutcomeFailure, "untrusted")
	h := synthetic(trio(), nil)
	h.Audit = trail

	w := get(t, h, "/?format=json", nil)
	var st Status
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Served) != 2 || st.Served[0].Names[0] != "b.example.com" || st.Served[0].Problem != "untrusted" ||
		st.Served[1].Names[0] != "a.example.com" || st.Served[1].Outcome != record.OutcomeOK {
		t.Fatalf("Served = %+v, want b.example.com's problem, then a.example.com ok", st.Served)
	}
	body := get(t, h, "/", nil).Body.String()
	i, j := strings.Index(body, `id="served"`), strings.Index(body, `id="activity"`)
	if i < 0 || j < i {
		t.Fatalf("no served section before the ACME activity in:\n%s", body)
	}
	section := body[i:j]
	if !strings.Contains(section, "10.0.0.2:443") || !strings.Contains(section, "untrusted") || strings.Contains(section, "not_manager_certificate") {
		t.Errorf("served section:\n%s\nwant b's untrusted, and a's old problem gone", section)
	}
}

// A name waiting for its dns-persist-01 record shows the record to
// publish, in the JSON and the HTML.
func TestDNSRecordShown(t *testing.T) {
	pending := cert("persist.example.com", 0, 0)
	pending.NotBefore, pending.NotAfter, pending.Serial = time.Time{}, time.Time{}, ""
	pending.DNSRecords = []record.DNS{{Name: "_validation-persist.persist.example.com", Type: "TXT",
		Value: "ca.example; accounturi=https://ca.example/acct/1", ZoneFileValue: `"ca.example; accounturi=https://ca.example/acct/1"`,
		Reason: "no TXT record"}}
	h := synthetic([]record.Certificate{pending}, nil)
	var st Status
	if err := json.Unmarshal(get(t, h, "/?format=json", nil).Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	want := `_validation-persist.persist.example.com. IN TXT "ca.example; accounturi=https://ca.example/acct/1"`
	if len(st.Certificates) != 1 || len(st.Certificates[0].DNSRecords) != 1 || st.Certificates[0].DNSRecords[0].Line != want {
		t.Fatalf("JSON certificates %+v, want the record %s", st.Certificates, want)
	}
	body := get(t, h, "/", nil).Body.String()
	if !strings.Contains(body, "_validation-persist.persist.example.com. IN TXT &#34;ca.example; accounturi=https://ca.example/acct/1&#34;") {
		t.Errorf("the page does not show the record to publish:\n%s", body)
	}
}

// sourceFunc is a CertificateSource made of a function.
type sourceFunc func(context.Context) ([]record.Certificate, error)

func (f sourceFunc) Certificates(ctx context.Context) ([]record.Certificate, error) {
	return f(ctx)
}

// Sources without a Manager: their certificates are shown with tenant
// and revocation, a failing source adds its error and the others stay.
func TestSources(t *testing.T) {
	issued := cert("web.example.com", -10*day, 90*day)
	issued.Tenant = "team-web"
	revoked := cert("old.example.com", -20*day, 90*day)
	revoked.Tenant, revoked.Revoked = "team-old", true
	h := &Handler{
		Now: func() time.Time { return t0 },
		Sources: []CertificateSource{
			sourceFunc(func(context.Context) ([]record.Certificate, error) {
				return []record.Certificate{issued, revoked}, nil
			}),
			sourceFunc(func(context.Context) ([]record.Certificate, error) {
				return nil, errors.New("relay: storage down")
			}),
		},
	}
	st := decodeStatus(t, get(t, h, "/?format=json", nil))
	if len(st.Errors) != 1 || st.Errors[0] != "relay: storage down" {
		t.Errorf("errors %q, want the failing source's only", st.Errors)
	}
	if len(st.Certificates) != 2 {
		t.Fatalf("got %d certificates, want 2: %+v", len(st.Certificates), st.Certificates)
	}
	got := map[string]Certificate{}
	for _, c := range st.Certificates {
		got[c.Name] = c
	}
	if c := got["web.example.com"]; c.Tenant != "team-web" || c.Revoked || c.State != StateOK || c.DaysLeft != 80 {
		t.Errorf("web.example.com: got %+v, want tenant team-web, ok, 80 days left", c)
	}
	if c := got["old.example.com"]; c.Tenant != "team-old" || !c.Revoked || c.State != StateRevoked {
		t.Errorf("old.example.com: got %+v, want tenant team-old, revoked", c)
	}
	if st.Counts[StateRevoked] != 1 || st.Counts[StateOK] != 1 {
		t.Errorf("counts %v, want 1 revoked and 1 ok", st.Counts)
	}

	body := get(t, h, "/", nil).Body.String()
	for _, want := range []string{
		`data-name="web.example.com" data-state="ok"`, "tenant team-web",
		`data-name="old.example.com" data-state="revoked"`, "tenant team-old",
		`<span class="badge st-revoked">revoked</span>`, "relay: storage down",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q:\n%s", want, body)
		}
	}
}

// A Manager and a source together: both lists are shown.
func TestManagerAndSources(t *testing.T) {
	m := &autotls.Manager{Storage: storage.NewMemory()}
	defer m.Close()
	issued := cert("web.example.com", -10*day, 90*day)
	issued.Tenant = "team-web"
	h := &Handler{Manager: m, Now: func() time.Time { return t0 }, Sources: []CertificateSource{
		sourceFunc(func(context.Context) ([]record.Certificate, error) {
			return []record.Certificate{issued}, nil
		}),
	}}
	st := decodeStatus(t, get(t, h, "/?format=json", nil))
	if len(st.Errors) != 0 || len(st.Certificates) != 1 || st.Certificates[0].Tenant != "team-web" {
		t.Errorf("got %+v, want the source's certificate and no error", st)
	}
}

// brokenStore fails every read.
type brokenStore struct{ storage.Storage }

func (brokenStore) Load(context.Context, string) ([]byte, error) {
	return nil, errors.New("storage is down")
}

func (brokenStore) List(context.Context, string) ([]string, error) {
	return nil, errors.New("storage is down")
}

// An audit trail whose storage fails shows its error once, although both
// of its reads (activity, rate limits) fail alike.
func TestAuditErrorShownOnce(t *testing.T) {
	h := synthetic(trio(), nil)
	h.Audit = &audit.Log{Storage: brokenStore{storage.NewMemory()}, Node: "node-a"}
	st := decodeStatus(t, get(t, h, "/?format=json", nil))
	if len(st.Errors) != 1 || !strings.Contains(st.Errors[0], "storage is down") {
		t.Errorf("errors %q, want the audit trail's storage error once", st.Errors)
	}
	if len(st.Certificates) != len(trio()) {
		t.Errorf("%d certificates shown, want all %d", len(st.Certificates), len(trio()))
	}
}

// TestPages: the HTML and the JSON list a page of MaxRows (or ?limit=)
// certificates, the soonest expiry first, with a cursor to the next page
// that ends at the last; ?state= keeps one state; the first page lists
// the failing certificate far down among those needing attention; the
// counts and the total cover every certificate; a bad query is a 400.
func TestPages(t *testing.T) {
	var infos []record.Certificate
	for i := range 30 {
		infos = append(infos, cert(fmt.Sprintf("ok%02d.example.com", i), -time.Duration(i)*time.Hour, 90*day))
	}
	// Expires last, but its renewal failed.
	late := cert("late-failing.example.com", 0, 91*day)
	late.LastError, late.LastErrorAt = "acme: serverInternal: down", t0.Add(-time.Minute)
	infos = append(infos, late)
	h := synthetic(infos, nil)
	h.MaxRows = 10
	html := get(t, h, "/", nil).Body.String()
	if n := strings.Count(html, `<tr class="cert `); n != 10 {
		t.Errorf("%d rows, want a page of 10", n)
	}
	if !strings.Contains(html, `<li class="cert st-failing" data-name="late-failing.example.com"`) {
		t.Error("the first page does not list the failing certificate as needing attention")
	}
	if !strings.Contains(html, "31 certificates") || !strings.Contains(html, `href="?state=failing"`) || !strings.Contains(html, `rel="next"`) {
		t.Error("the summary does not count every certificate, link to the failing ones, or the page to the next")
	}

	var names []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("the pages do not end")
		}
		target := "/?format=json&limit=7"
		if after != "" {
			target += "&after=" + url.QueryEscape(after)
		}
		st := decodeStatus(t, get(t, h, target, nil))
		if st.Total != 31 || st.Counts[StateOK] != 30 || st.Counts[StateFailing] != 1 {
			t.Fatalf("total %d, counts %v; want 31: 30 ok, 1 failing", st.Total, st.Counts)
		}
		if len(st.Certificates) > 7 {
			t.Fatalf("page of %d, want at most 7", len(st.Certificates))
		}
		if (pages == 0) != (len(st.Attention) == 1) {
			t.Errorf("page %d: attention %+v, want the failing certificate on the first page only", pages, st.Attention)
		}
		for _, c := range st.Certificates {
			names = append(names, c.Name)
		}
		if st.Next == "" {
			break
		}
		after = st.Next
	}
	if len(names) != 31 || names[0] != "ok29.example.com" || names[30] != "late-failing.example.com" {
		t.Errorf("pages listed %d names %v, want all 31 once, by expiry", len(names), names)
	}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			t.Errorf("%s listed twice", n)
		}
		seen[n] = true
	}

	st := decodeStatus(t, get(t, h, "/?format=json&state=failing", nil))
	if len(st.Certificates) != 1 || st.Certificates[0].Name != "late-failing.example.com" || st.Total != 1 || st.Filter != StateFailing || st.Next != "" {
		t.Errorf("state=failing: %+v, want the one failing certificate", st)
	}
	for _, bad := range []string{"/?state=sad", "/?limit=0", "/?limit=1001", "/?after=nodot", "/?format=json&after=x.y"} {
		if w := get(t, h, bad, nil); w.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", bad, w.Code)
		}
	}
	h2 := synthetic(infos, nil)
	h2.MaxRows = -1
	if n := strings.Count(get(t, h2, "/", nil).Body.String(), `<tr class="cert `); n != 31 {
		t.Errorf("MaxRows -1: %d rows, want all 31", n)
	}
}

// A relay may issue one name to two tenants in the same second: pages of
// one certificate list both, once each, through the cursor.
func TestPagesSameNameTwoTenants(t *testing.T) {
	var infos []record.Certificate
	for _, tenant := range []string{"team b", "team-a", ""} {
		c := cert("shared.example.com", -day, 90*day)
		c.Tenant = tenant
		infos = append(infos, c)
	}
	h := synthetic(infos, nil)
	var got []string
	after := ""
	for range 5 {
		target := "/?format=json&limit=1"
		if after != "" {
			target += "&after=" + url.QueryEscape(after)
		}
		st := decodeStatus(t, get(t, h, target, nil))
		for _, c := range st.Certificates {
			got = append(got, c.Tenant)
		}
		if st.Next == "" {
			break
		}
		after = st.Next
	}
	if strings.Join(got, ",") != ",team b,team-a" {
		t.Errorf("pages listed tenants %q, want each of the three once", got)
	}
}
