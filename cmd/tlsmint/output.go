package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/tlsmint/tlsmint/acme"
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

// printJSON writes v as indented JSON to stdout.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
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
	fmt.Fprintf(&b, " in %s", e.Latency.Round(time.Millisecond))
	if e.Retries > 0 {
		fmt.Fprintf(&b, " after %d retries", e.Retries)
	}
	if e.ProblemType != "" {
		fmt.Fprintf(&b, ": %s: %s", e.ProblemType, e.ProblemDetail)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
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

func (a *app) newProgress() *progress {
	return &progress{w: a.stderr, on: a.progress, start: time.Now()}
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
	switch e.Operation {
	case acme.OpNewOrder:
		o.p.step("order created")
	case acme.OpFinalize:
		o.p.step("CSR submitted, finalizing")
	case acme.OpCertificate:
		o.p.step("certificate downloaded")
	}
}
