package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/durfmt"
)

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// printJSON writes v as indented JSON to stdout. encoding/json escapes
// C0 controls but not C1 controls (U+0080 to U+009F, such as the 8-bit
// CSI) or format characters: those are escaped here too, so that the
// JSON of a hostile text is as safe on a terminal as the tables.
func (a *app) printJSON(v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	out := b.Bytes()
	if bytes.ContainsFunc(out, unsafeInJSON) {
		// Outside strings JSON has only ASCII: every such character is
		// in a string, where its \u escape means the same.
		var esc bytes.Buffer
		for _, r := range string(out) {
			switch {
			case unsafeInJSON(r) && r >= 0x10000:
				r1, r2 := utf16.EncodeRune(r)
				fmt.Fprintf(&esc, `\u%04x\u%04x`, r1, r2)
			case unsafeInJSON(r):
				fmt.Fprintf(&esc, `\u%04x`, r)
			default:
				esc.WriteRune(r)
			}
		}
		out = esc.Bytes()
	}
	_, err := a.stdout.Write(out)
	return err
}

// unsafeInJSON reports a character printJSON escapes: a C1 control or a
// format character.
func unsafeInJSON(r rune) bool {
	return r >= 0x80 && r <= 0x9f || unicode.Is(unicode.Cf, r)
}

// table returns a tabwriter on stdout; the caller flushes it.
func (a *app) table() *tabwriter.Writer {
	return tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
}

// fmtTime prints a time for tables, "-" for zero.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// termSafe returns s for a text table on a terminal: control characters
// (C0, DEL and C1, which start terminal escape sequences; tabs and newlines,
// which would break the table), format characters (such as a right-to-left
// override) and invalid UTF-8 are shown as Go escapes (\x1b, \u202e, \xff),
// so that no CA, served certificate or storage value can drive the
// operator's terminal. --json output keeps the text as it is.
func termSafe(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x80 && unicode.IsControl(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case r > 0xffff && unicode.Is(unicode.Cf, r):
			fmt.Fprintf(&b, `\U%08x`, r)
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// dash prints "-" for an empty string.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// daysLeft is the whole days from now to t, rounded down.
func daysLeft(t, now time.Time) int {
	d := t.Sub(now)
	days := int(d / (24 * time.Hour))
	if d < 0 && d%(24*time.Hour) != 0 {
		days--
	}
	return days
}

// multiObserver reports to several observers.
type multiObserver []acme.Observer

func (m multiObserver) ObserveExchange(e acme.Exchange) {
	for _, o := range m {
		o.ObserveExchange(e)
	}
}

// verboseObserver prints one line per ACME exchange (-v).
type verboseObserver struct {
	mu sync.Mutex
	w  io.Writer
}

func (v *verboseObserver) ObserveExchange(e acme.Exchange) {
	var b strings.Builder
	fmt.Fprintf(&b, "acme: %s", e.Operation)
	if len(e.Identifiers) > 0 {
		ids := make([]string, len(e.Identifiers))
		for i, id := range e.Identifiers {
			ids[i] = id.Value
		}
		fmt.Fprintf(&b, " [%s]", strings.Join(ids, " "))
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, " -> %d", e.Status)
	}
	fmt.Fprintf(&b, " in %s", durfmt.Format(e.Latency))
	if e.Retries > 0 {
		fmt.Fprintf(&b, " after %d retries", e.Retries)
	}
	if e.ProblemType != "" {
		fmt.Fprintf(&b, ": %s: %s", e.ProblemType, e.ProblemDetail)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", durfmt.Format(e.RetryAfter))
	}
	if e.Err != "" {
		fmt.Fprintf(&b, ": %s", e.Err)
	}
	v.mu.Lock()
	fmt.Fprintln(v.w, b.String())
	v.mu.Unlock()
}

// progress prints steps of long work on stderr, with the elapsed time,
// when enabled (--progress, on by default on a terminal).
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	on    bool
	start time.Time
}

// newProgress returns the run's progress, the same for every caller, so
// that the elapsed times count from one start.
func (a *app) newProgress() *progress {
	if a.prog == nil {
		a.prog = &progress{w: a.stderr, on: a.progress, start: time.Now()}
	}
	return a.prog
}

func (p *progress) step(format string, args ...any) {
	if p == nil || !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "[%5.1fs] %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
}

// progressObserver turns exchanges into progress steps.
type progressObserver struct{ p *progress }

func (o progressObserver) ObserveExchange(e acme.Exchange) {
	if e.Status >= 400 || e.Status == 0 {
		return
	}
	if e.RetryAfter > 0 {
		o.p.step("waiting for the CA (Retry-After %s)", durfmt.Format(e.RetryAfter))
	}
	switch e.Operation {
	case acme.OpNewOrder:
		o.p.step("order created")
	case acme.OpFinalize:
		o.p.step("CSR submitted, finalizing")
	case acme.OpCertificate:
		o.p.step("certificate downloaded")
	}
}

// Colours of states in text output, as SGR sequences of one length each,
// so that a coloured column stays aligned (see colorColumn).
const (
	sgrRed    = "\x1b[31m"
	sgrGreen  = "\x1b[32m"
	sgrYellow = "\x1b[33m"
	sgrCyan   = "\x1b[36m"
	sgrReset  = "\x1b[0m"
)

// colorOn reports whether text output colours states: --color always;
// or auto (the default), stdout a terminal, NO_COLOR unset or empty and
// TERM not "dumb".
func (a *app) colorOn() bool {
	switch a.color {
	case "always":
		return true
	case "never":
		return false
	}
	return isTerminal(a.stdout) && a.getenv("NO_COLOR") == "" && a.getenv("TERM") != "dumb"
}

// paint wraps s in the colour sgr ("" leaves it as it is).
func paint(sgr, s string) string {
	if sgr == "" {
		return s
	}
	return sgr + s + sgrReset
}

// verdictColor is check's OK (green) or PROBLEM (red).
func verdictColor(ok bool) string {
	if ok {
		return sgrGreen
	}
	return sgrRed
}

// stateColor is the colour of a state word in a table: green for what is
// well, yellow for what needs attention soon, red for what is wrong.
func stateColor(state string) string {
	switch strings.ToLower(state) {
	case "ok", "imported", "valid":
		return sgrGreen
	case "expiring", "expiring_soon", "skipped", "refused", "renewing":
		return sgrYellow
	case "failing", "failed", "failure", "expired", "revoked", "problem", "error":
		return sgrRed
	case "pending":
		return sgrCyan
	}
	return ""
}

// colorColumn colours the words of the column headed header in a table
// tabwriter laid out: the column starts where its header does, on every
// line (tabwriter pads by characters, so the offset counts runes).
// Colouring after the layout keeps the escape sequences out of the
// widths.
func colorColumn(table, header string) string {
	lines := strings.SplitAfter(table, "\n")
	if len(lines) == 0 {
		return table
	}
	off := strings.Index(lines[0], header)
	if off < 0 || (off > 0 && lines[0][off-1] != ' ') {
		return table
	}
	off = utf8.RuneCountInString(lines[0][:off])
	for i := 1; i < len(lines); i++ {
		r := []rune(lines[i])
		if len(r) <= off || (off > 0 && r[off-1] != ' ') {
			continue
		}
		end := off
		for end < len(r) && r[end] != ' ' && r[end] != '\n' {
			end++
		}
		word := string(r[off:end])
		if c := stateColor(word); c != "" {
			lines[i] = string(r[:off]) + paint(c, word) + string(r[end:])
		}
	}
	return strings.Join(lines, "")
}

// coloredTable is a.table() for a table whose column headed stateHeader
// holds states: Flush lays it out, colours that column when colorOn, and
// writes it to stdout.
type coloredTable struct {
	*tabwriter.Writer
	buf    *bytes.Buffer
	a      *app
	header string
}

func (a *app) stateTable(stateHeader string) *coloredTable {
	var b bytes.Buffer
	return &coloredTable{Writer: tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0), buf: &b, a: a, header: stateHeader}
}

// Flush lays the table out and writes it.
func (t *coloredTable) Flush() error {
	if err := t.Writer.Flush(); err != nil {
		return err
	}
	text := t.buf.String()
	t.buf.Reset()
	if t.a.colorOn() {
		text = colorColumn(text, t.header)
	}
	_, err := io.WriteString(t.a.stdout, text)
	return err
}
