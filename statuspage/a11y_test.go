package statuspage

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/audit"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/storage"
)

// pages renders the page in each shape it takes: the synthetic set with
// an audit trail of two nodes, hostile input, and nothing at all.
func pages(t *testing.T) map[string]string {
	t.Helper()
	trail := &audit.Log{Storage: storage.NewMemory(), Node: "node-a"}
	t.Cleanup(func() { trail.Close() })
	trail.Add(record.Audit{Time: t0.Add(-2 * time.Hour), Kind: record.KindExchange, Outcome: record.OutcomeOK,
		Issuer: "https://ca.example/dir", Account: "https://ca.example/acct/1", Operation: acme.OpNewOrder,
		Names: []string{"healthy.example.com"}, Status: 201, Latency: 40 * time.Millisecond})
	trail.Add(record.Audit{Time: t0.Add(-time.Hour), Kind: record.KindDecision, Outcome: record.OutcomeOK,
		Issuer: "https://ca.example/dir", Operation: string(autotls.EventObtained), Names: []string{"healthy.example.com"}})
	trail.Add(record.Audit{Time: t0.Add(-time.Minute), Kind: record.KindExchange, Outcome: record.OutcomeFailure,
		Issuer: "https://ca.example/dir", Operation: acme.OpNewOrder, Names: []string{"failing.example.com"},
		Status: 429, Problem: "urn:ietf:params:acme:error:rateLimited", Detail: "<b>too many</b>"})
	trail.Add(record.Audit{Time: t0.Add(-30 * time.Minute), Kind: record.KindProbe, Outcome: record.OutcomeFailure,
		Operation: "probe", Target: "127.0.0.1:443", Names: []string{"failing.example.com"}, Serial: "0badc0de",
		NotAfter: t0.Add(day), Problem: "expiring_soon", Detail: "watchdog: certificate expires soon: in 1 day"})
	withAudit := synthetic(trio(), nil)
	withAudit.Audit = trail
	withAudit.Refresh = 30 * time.Second

	evil := cert(`<script>x</script>`, -day, 90*day)
	evil.LastError = `"><svg onload=alert(1)>`
	hostile := synthetic([]record.Certificate{evil}, fmt.Errorf("storage: %s", `</ul><h1>`))

	many := make([]record.Certificate, 0, 60)
	for i := range 60 {
		many = append(many, cert(fmt.Sprintf("n%02d.example.com", i), -time.Duration(i)*day, 90*day))
	}
	capped := synthetic(many, nil)
	capped.MaxRows = 20 // the table ends with the count of those left out
	out := map[string]string{}
	for name, h := range map[string]*Handler{
		"with audit":        withAudit,
		"hostile":           hostile,
		"empty":             synthetic(nil, nil),
		"60 names":          synthetic(many, nil),
		"60 names, 20 rows": capped,
	} {
		w := get(t, h, "/", nil)
		if w.Code != 200 {
			t.Fatalf("%s: got status %d", name, w.Code)
		}
		out[name] = w.Body.String()
	}
	return out
}

var voidElements = []string{"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

// checkMarkup reports markup errors the HTML parser would silently
// repair: unclosed or misnested elements, duplicate attributes and ids,
// references to ids that do not exist, inline script and style.
func checkMarkup(page string) []string {
	var errs []string
	z := html.NewTokenizer(strings.NewReader(page))
	var stack []string
	ids := map[string]int{}
	var refs []string
	sawDoctype := false
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		tok := z.Token()
		switch tt {
		case html.DoctypeToken:
			sawDoctype = strings.EqualFold(tok.Data, "html")
		case html.StartTagToken, html.SelfClosingTagToken:
			seen := map[string]bool{}
			for _, a := range tok.Attr {
				if seen[a.Key] {
					errs = append(errs, fmt.Sprintf("<%s> repeats attribute %s", tok.Data, a.Key))
				}
				seen[a.Key] = true
				switch {
				case a.Key == "id":
					ids[a.Val]++
				case a.Key == "aria-labelledby" || a.Key == "aria-describedby" || a.Key == "for":
					refs = append(refs, strings.Fields(a.Val)...)
				case strings.HasPrefix(a.Key, "on") || a.Key == "style":
					errs = append(errs, fmt.Sprintf("<%s> has inline %s", tok.Data, a.Key))
				}
			}
			if tok.Data == "script" {
				errs = append(errs, "the page has a script element")
			}
			if tt == html.StartTagToken && !slices.Contains(voidElements, tok.Data) {
				stack = append(stack, tok.Data)
			}
		case html.EndTagToken:
			if len(stack) == 0 || stack[len(stack)-1] != tok.Data {
				errs = append(errs, fmt.Sprintf("</%s> closes %v", tok.Data, stack))
				continue
			}
			stack = stack[:len(stack)-1]
		}
	}
	if err := z.Err(); err != nil && err.Error() != "EOF" {
		errs = append(errs, "tokenizing: "+err.Error())
	}
	if !sawDoctype {
		errs = append(errs, "no <!DOCTYPE html>")
	}
	if len(stack) > 0 {
		errs = append(errs, fmt.Sprintf("unclosed at the end: %v", stack))
	}
	for id, n := range ids {
		if n > 1 {
			errs = append(errs, fmt.Sprintf("id %q used %d times", id, n))
		}
	}
	for _, r := range refs {
		if ids[r] == 0 {
			errs = append(errs, fmt.Sprintf("reference to missing id %q", r))
		}
	}
	return errs
}

func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

func text(n *html.Node) string {
	var b strings.Builder
	for d := range n.Descendants() {
		if d.Type == html.TextNode {
			b.WriteString(d.Data)
		}
	}
	return strings.TrimSpace(b.String())
}

// checkAccessibility checks the document against the rules of WCAG that
// a machine can decide: language, title, one h1 and no skipped heading
// level, tables with a caption, header cells with a scope, graphics with
// a text alternative, links with text, landmarks.
func checkAccessibility(doc *html.Node) []string {
	var errs []string
	var title string
	h1s, lastLevel := 0, 0
	landmarks := map[string]bool{}
	for n := range doc.Descendants() {
		if n.Type != html.ElementNode {
			continue
		}
		switch n.DataAtom {
		case atom.Html:
			if lang, _ := attr(n, "lang"); lang == "" {
				errs = append(errs, "<html> has no lang")
			}
		case atom.Title:
			if n.Parent != nil && n.Parent.DataAtom == atom.Head {
				title = text(n)
			}
		case atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6:
			level := int(n.Data[1] - '0')
			if level == 1 {
				h1s++
			}
			if level > lastLevel+1 {
				errs = append(errs, fmt.Sprintf("heading %q skips from h%d to h%d", text(n), lastLevel, level))
			}
			lastLevel = level
			if text(n) == "" {
				errs = append(errs, "an empty heading")
			}
		case atom.Main, atom.Header, atom.Footer:
			landmarks[n.Data] = true
		case atom.Table:
			c := n.FirstChild
			for c != nil && c.Type == html.TextNode && strings.TrimSpace(c.Data) == "" {
				c = c.NextSibling
			}
			if c == nil || c.DataAtom != atom.Caption || text(c) == "" {
				id, _ := attr(n, "id")
				errs = append(errs, fmt.Sprintf("table %q has no caption first", id))
			}
		case atom.Th:
			if scope, _ := attr(n, "scope"); scope != "col" && scope != "row" {
				errs = append(errs, fmt.Sprintf("<th> %q has no scope", text(n)))
			}
		case atom.Img:
			if _, ok := attr(n, "alt"); !ok {
				errs = append(errs, "<img> without alt")
			}
		case atom.Svg:
			role, _ := attr(n, "role")
			label, _ := attr(n, "aria-label")
			hasTitle := false
			for c := range n.ChildNodes() {
				if c.Type == html.ElementNode && c.Data == "title" && text(c) != "" {
					hasTitle = true
				}
			}
			if role != "img" || (label == "" && !hasTitle) {
				errs = append(errs, "<svg> without role=img and a title or aria-label")
			}
		case atom.A:
			if href, _ := attr(n, "href"); href == "" || text(n) == "" {
				errs = append(errs, fmt.Sprintf("link %q without href or text", text(n)))
			}
		}
	}
	if title == "" {
		errs = append(errs, "no <title>")
	}
	if h1s != 1 {
		errs = append(errs, fmt.Sprintf("%d h1 elements, want 1", h1s))
	}
	for _, l := range []string{"header", "main", "footer"} {
		if !landmarks[l] {
			errs = append(errs, "no <"+l+"> landmark")
		}
	}
	return errs
}

func TestHTMLAndAccessibility(t *testing.T) {
	for name, page := range pages(t) {
		t.Run(name, func(t *testing.T) {
			for _, e := range checkMarkup(page) {
				t.Errorf("markup: %s", e)
			}
			doc, err := html.Parse(strings.NewReader(page))
			if err != nil {
				t.Fatalf("html.Parse: %v", err)
			}
			for _, e := range checkAccessibility(doc) {
				t.Errorf("accessibility: %s", e)
			}
		})
	}
}

// The checks find what they are for.
func TestChecksCatchErrors(t *testing.T) {
	for _, tc := range []struct{ page, want string }{
		{`<!DOCTYPE html><html><body><p><b>x</p></b></body></html>`, "</p> closes"},
		{`<!DOCTYPE html><html><body><div id="a"></div><div id="a"></div></body></html>`, `id "a" used 2 times`},
		{`<!DOCTYPE html><html><body><svg aria-labelledby="t"></svg></body></html>`, `missing id "t"`},
		{`<!DOCTYPE html><html><body><p onclick="x()">x</p></body></html>`, "inline onclick"},
		{`<html><body></body></html>`, "no <!DOCTYPE html>"},
		{`<!DOCTYPE html><html><body><main>`, "unclosed"},
	} {
		if errs := checkMarkup(tc.page); !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, tc.want) }) {
			t.Errorf("checkMarkup(%q): got %q, want %q", tc.page, errs, tc.want)
		}
	}
	for _, tc := range []struct{ page, want string }{
		{`<html><head><title>x</title></head><body><h1>a</h1><h3>b</h3></body></html>`, "skips from h1 to h3"},
		{`<html><head><title>x</title></head><body><table><tr><th>a</th></tr></table></body></html>`, "no caption"},
		{`<html><head><title>x</title></head><body><table><caption>c</caption><tr><th>a</th></tr></table></body></html>`, "has no scope"},
		{`<html lang="en"><body><svg role="img"></svg></body></html>`, "<svg> without"},
		{`<html><body></body></html>`, "no lang"},
	} {
		doc, _ := html.Parse(strings.NewReader(tc.page))
		if errs := checkAccessibility(doc); !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, tc.want) }) {
			t.Errorf("checkAccessibility(%q): got %q, want %q", tc.page, errs, tc.want)
		}
	}
}

// cssColors reads the custom properties of page.css's :root.
func cssColors(t *testing.T) map[string]string {
	t.Helper()
	root := regexp.MustCompile(`(?s):root\s*\{(.*?)\}`).FindStringSubmatch(pageCSS)
	if root == nil {
		t.Fatal("page.css has no :root block")
	}
	out := map[string]string{}
	for _, m := range regexp.MustCompile(`--([a-z-]+):\s*(#[0-9a-fA-F]{6})\s*;`).FindAllStringSubmatch(root[1], -1) {
		out[m[1]] = strings.ToLower(m[2])
	}
	return out
}

// luminance is WCAG 2's relative luminance of a #rrggbb colour.
func luminance(hex string) float64 {
	var l [3]float64
	for i := range 3 {
		v, _ := strconv.ParseUint(hex[1+2*i:3+2*i], 16, 8)
		c := float64(v) / 255
		if c <= 0.04045 {
			l[i] = c / 12.92
		} else {
			l[i] = math.Pow((c+0.055)/1.055, 2.4)
		}
	}
	return 0.2126*l[0] + 0.7152*l[1] + 0.0722*l[2]
}

func contrast(a, b string) float64 {
	la, lb := luminance(a), luminance(b)
	if la < lb {
		la, lb = lb, la
	}
	return (la + 0.05) / (lb + 0.05)
}

func TestContrastWCAG(t *testing.T) {
	if got := contrast("#000000", "#ffffff"); math.Abs(got-21) > 1e-9 {
		t.Fatalf("contrast of black on white: got %v, want 21", got)
	}
	if got := contrast("#777777", "#ffffff"); math.Abs(got-4.48) > 0.01 {
		t.Fatalf("contrast of #777 on white: got %.3f, want 4.48", got)
	}
	c := cssColors(t)
	type pair struct{ fg, bg string }
	// Text needs 4.5:1 (WCAG 1.4.3, AA); the timeline's bars and marks,
	// as graphics that carry meaning, 3:1 against the page (1.4.11).
	text := []pair{{"text", "bg"}, {"muted", "bg"}, {"link", "bg"}, {"failing-fg", "bg"}, {"failing-fg", "failing-bg"}}
	graphics := []pair{{"text", "bg"}}
	for _, s := range []State{StateOK, StateExpiring, StateFailing, StateExpired, StatePending, StateRevoked} {
		text = append(text, pair{string(s) + "-fg", string(s) + "-bg"})
		graphics = append(graphics, pair{string(s) + "-bar", "bg"})
		if !strings.Contains(pageCSS, ".badge.st-"+string(s)+" ") || !strings.Contains(pageCSS, ".bar.st-"+string(s)+" ") {
			t.Errorf("page.css has no badge or bar colour for state %s", s)
		}
	}
	check := func(p pair, min float64) {
		fg, bg := c[p.fg], c[p.bg]
		if fg == "" || bg == "" {
			t.Errorf("page.css lacks --%s or --%s", p.fg, p.bg)
			return
		}
		if got := contrast(fg, bg); got < min {
			t.Errorf("--%s %s on --%s %s: got contrast %.2f, want at least %.1f", p.fg, fg, p.bg, bg, got, min)
		}
	}
	for _, p := range text {
		check(p, 4.5)
	}
	for _, p := range graphics {
		check(p, 3)
	}
}
