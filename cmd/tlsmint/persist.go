package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/durfmt"
	"github.com/tlsmint/tlsmint/solvers"
)

// manualPersist solves dns-persist-01 by hand, with a read-only
// solvers.DNSPersist01 (no DNS credentials): Present looks the record up
// at every authoritative nameserver and, when it is missing, prints the
// record to create; Wait polls until every nameserver answers it, so the
// CA is asked to validate only then. Nothing is ever deleted: the record
// serves every later validation of the name by the account.
type manualPersist struct {
	// plain answers names whose wildcard is not in the order (a wildcard
	// name itself gets policy=wildcard from the challenge); wild puts
	// policy=wildcard in every record, for names whose wildcard is in the
	// order too, so that one record serves both.
	plain, wild *solvers.DNSPersist01
	wildBases   map[string]bool
	out         io.Writer
	p           *progress
	timeout     time.Duration

	mu      sync.Mutex
	printed map[string]bool                        // zone file lines printed
	pending map[string]*solvers.PersistRecordError // by challenge URL
}

var (
	_ acme.Solver = (*manualPersist)(nil)
	_ acme.Waiter = (*manualPersist)(nil)
)

// persistPoll bounds the interval between two look-ups while waiting; the
// first comes sooner, since the record may be published within seconds.
const (
	persistFirstPoll = 100 * time.Millisecond
	persistMaxPoll   = solvers.DefaultPollInterval
)

// errDNSWait marks errors of the manual DNS solvers (look-ups, waits), so
// that they are not mistaken for the CA being unreachable.
type errDNSWait struct{ err error }

func (e *errDNSWait) Error() string { return e.err.Error() }
func (e *errDNSWait) Unwrap() error { return e.err }

func newManualPersist(f *solverFlags, names []string, out io.Writer, p *progress) *manualPersist {
	newSolver := func(wildcard bool) *solvers.DNSPersist01 {
		return &solvers.DNSPersist01{Resolvers: f.dnsResolvers, NameserverPort: f.dnsPort, Wildcard: wildcard}
	}
	m := &manualPersist{
		plain: newSolver(f.wildcardPolicy), wild: newSolver(true), wildBases: map[string]bool{},
		out: out, p: p, timeout: f.dnsTimeout,
		printed: map[string]bool{}, pending: map[string]*solvers.PersistRecordError{},
	}
	for _, n := range names {
		if b, ok := strings.CutPrefix(n, "*."); ok {
			m.wildBases[b] = true
		}
	}
	return m
}

func (m *manualPersist) solver(ch acme.Challenge) *solvers.DNSPersist01 {
	if m.wildBases[ch.Identifier.Value] {
		return m.wild
	}
	return m.plain
}

// zoneFileLine is the record as one line of zone file syntax.
func zoneFileLine(pe *solvers.PersistRecordError) string {
	return pe.Name + ". IN TXT " + pe.Record.ZoneFileValue()
}

// Present implements acme.Solver: nothing to do when the record is
// published; else it prints the record to create (once per record).
func (m *manualPersist) Present(ctx context.Context, ch acme.Challenge) error {
	err := m.solver(ch).Present(ctx, ch)
	var pe *solvers.PersistRecordError
	if err == nil {
		m.p.step("the dns-persist-01 record of %s is published", ch.Identifier.Value)
		return nil
	}
	if !errors.As(err, &pe) {
		return &errDNSWait{err}
	}
	line := zoneFileLine(pe)
	m.mu.Lock()
	m.pending[ch.URL] = pe
	first := !m.printed[line]
	m.printed[line] = true
	m.mu.Unlock()
	if first {
		var b strings.Builder
		fmt.Fprintf(&b, "Create this TXT record for dns-persist-01 (keep it: every later validation of %s by this account reuses it):\n", ch.Identifier.Value)
		fmt.Fprintf(&b, "  name:  %s\n", pe.Name)
		fmt.Fprintf(&b, "  value: %s\n", pe.Record.String())
		fmt.Fprintf(&b, "%s\n", line)
		fmt.Fprintf(&b, "(what is published now: %s)\n", pe.Reason)
		m.mu.Lock()
		io.WriteString(m.out, b.String())
		m.mu.Unlock()
	}
	return nil
}

// errPersistTimeout is the cause of the end of Wait's own deadline.
var errPersistTimeout = errors.New("dns-persist-01 wait timed out")

// Wait implements acme.Waiter: it polls the authoritative nameservers
// until every one answers the record Present printed, or the timeout
// (--dns-timeout) passes.
func (m *manualPersist) Wait(ctx context.Context, ch acme.Challenge) error {
	m.mu.Lock()
	last := m.pending[ch.URL]
	m.mu.Unlock()
	if last == nil {
		return nil
	}
	want := zoneFileLine(last)
	m.p.step("waiting until every authoritative nameserver answers the dns-persist-01 record of %s", ch.Identifier.Value)
	wctx, cancel := context.WithTimeoutCause(ctx, m.timeout, errPersistTimeout)
	defer cancel()
	var lastErr error // a look-up that failed, after the record was asked for
	for interval := persistFirstPoll; ; interval = min(interval*3/2, persistMaxPoll) {
		t := time.NewTimer(interval)
		select {
		case <-wctx.Done():
			t.Stop()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			why := last.Reason
			if lastErr != nil {
				why = lastErr.Error()
			}
			return &errDNSWait{fmt.Errorf("%w: the dns-persist-01 record %s is not answered by every authoritative nameserver of its zone after %s (%s): create it and run the command again, or wait longer with --dns-timeout",
				solvers.ErrNotPropagated, want, durfmt.Format(m.timeout), why)}
		case <-t.C:
		}
		err := m.solver(ch).Present(wctx, ch)
		var pe *solvers.PersistRecordError
		switch {
		case err == nil:
			m.p.step("the dns-persist-01 record of %s is visible at every authoritative nameserver", ch.Identifier.Value)
			return nil
		case errors.As(err, &pe):
			last, lastErr = pe, nil
		case wctx.Err() == nil:
			lastErr = err // a failed look-up: try again until the timeout
		}
	}
}

// CleanUp implements acme.Solver. It deletes nothing: the record stays.
func (m *manualPersist) CleanUp(ctx context.Context, ch acme.Challenge) error {
	m.mu.Lock()
	delete(m.pending, ch.URL)
	m.mu.Unlock()
	return m.solver(ch).CleanUp(ctx, ch)
}

// finish prints, after the certificate was issued, that the records
// printed stay.
func (m *manualPersist) finish() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.printed) > 0 {
		io.WriteString(m.out, "The dns-persist-01 validation is done. Keep the TXT record(s): renewals of these names by this account need no DNS change (delete a record to end the binding of its name to the account).\n")
	}
}
