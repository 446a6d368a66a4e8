package autotls_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libdns/libdns"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/solvers"
	"github.com/tlsmint/tlsmint/solvers/dns01test"
)

// panickyProvider is a libdns provider whose AppendRecords panics once the
// calls allowed to succeed are used up, as a buggy provider module would.
type panickyProvider struct {
	*dns01test.Provider
	allow atomic.Int32
}

const providerPanic = "dns provider exploded"

func (p *panickyProvider) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	if p.allow.Add(-1) < 0 {
		panic(providerPanic)
	}
	return p.Provider.AppendRecords(ctx, zone, recs)
}

// panicEnv is a test CA and a Manager that solves dns-01 through a
// panickyProvider allowing ok calls, with its logs and failure events.
type panicEnv struct {
	*env
	m      *autotls.Manager
	logs   *syncBuffer
	failed chan autotls.Event
}

func newPanicEnv(t *testing.T, ok int32, mod func(*autotls.Manager)) *panicEnv {
	t.Helper()
	pe := &panicEnv{
		env:    newEnv(t, testpebble.Options{}),
		logs:   &syncBuffer{},
		failed: make(chan autotls.Event, 16),
	}
	pe.ca.DNS().AddZone("example.com")
	pe.ca.DNS().AddZone("example.org")
	p := &panickyProvider{Provider: &dns01test.Provider{Server: pe.ca.DNS()}}
	p.allow.Store(ok)
	pe.m = pe.manager(t, nil, func(m *autotls.Manager) {
		m.DNS01 = &solvers.DNS01{
			Provider:           p,
			Resolvers:          []string{pe.ca.DNS().Addr()},
			NameserverPort:     dnsPort(t, pe.ca.DNS().Addr()),
			PropagationTimeout: 5 * time.Second,
			PollInterval:       20 * time.Millisecond,
		}
		m.Logger = slog.New(slog.NewTextHandler(pe.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		m.OnEvent = func(ev autotls.Event) {
			if ev.Type == autotls.EventFailed {
				pe.failed <- ev
			}
		}
		if mod != nil {
			mod(m)
		}
	})
	return pe
}

// checkRecovered checks that err is the recovered panic of name, that its
// stack was logged at Error and that one failure event was emitted.
func (pe *panicEnv) checkRecovered(t *testing.T, name string, err error) {
	t.Helper()
	var ev autotls.Event
	select {
	case ev = <-pe.failed:
	case <-time.After(10 * time.Second):
		t.Fatalf("no failure event for %s", name)
	}
	if ev.Name != name || ev.RetryAt.IsZero() || ev.Err == nil || !strings.Contains(ev.Err.Error(), "panic") {
		t.Errorf("got failure event %+v, want one for %s with the panic and a retry time", ev, name)
	}
	select {
	case ev := <-pe.failed:
		t.Errorf("got a second failure event %+v, want one", ev)
	default:
	}
	want := "autotls: obtaining " + name + ": panic: " + providerPanic
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want an error containing %q", err, want)
	}
	var logged bool
	for l := range strings.SplitSeq(pe.logs.String(), "\n") {
		if strings.Contains(l, "level=ERROR") && strings.Contains(l, "recovered from a panic") &&
			strings.Contains(l, "name="+name) && strings.Contains(l, "panickyProvider).AppendRecords") {
			logged = true
		}
	}
	if !logged {
		t.Errorf("no Error log with the panic's stack for %s in:\n%s", name, pe.logs)
	}
}

func TestPanicInHandshakeIssuanceBacksOff(t *testing.T) {
	t.Parallel()
	pe := newPanicEnv(t, 0, nil)
	_, err := pe.m.GetCertificate(hello("example.com"))
	pe.checkRecovered(t, "example.com", err)

	before := totalRequests(pe.ca)
	_, err = pe.m.GetCertificate(hello("example.com"))
	if !errors.Is(err, autotls.ErrBackoff) || !strings.Contains(err.Error(), providerPanic) {
		t.Fatalf("second handshake: got %v, want ErrBackoff with the panic", err)
	}
	if got := totalRequests(pe.ca); got != before {
		t.Fatalf("got %d CA requests during the backoff, want 0", got-before)
	}
	// Other names are unaffected, and the Manager closes cleanly.
	if _, err := pe.m.GetCertificate(hello("nope.example.net")); !errors.Is(err, autotls.ErrHostNotAllowed) {
		t.Fatalf("got %v, want ErrHostNotAllowed", err)
	}
	if err := pe.m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestPanicInManageBacksOff(t *testing.T) {
	t.Parallel()
	pe := newPanicEnv(t, 0, nil)
	err := pe.m.Manage(ctxT(t), "www.example.org")
	pe.checkRecovered(t, "www.example.org", err)

	before := totalRequests(pe.ca)
	if err := pe.m.Manage(ctxT(t), "www.example.org"); !errors.Is(err, autotls.ErrBackoff) {
		t.Fatalf("second Manage: got %v, want ErrBackoff", err)
	}
	if got := totalRequests(pe.ca); got != before {
		t.Fatalf("got %d CA requests during the backoff, want 0", got-before)
	}
}

func TestPanicInRenewalKeepsServing(t *testing.T) {
	t.Parallel()
	// The first order succeeds; the renewal's provider call panics. The
	// renewal is made due by moving the Manager's clock, not by waiting.
	var offset atomic.Int64
	pe := newPanicEnv(t, 1, func(m *autotls.Manager) {
		autotls.SetClockForTest(m, func() time.Time { return time.Now().Add(time.Duration(offset.Load())) })
	})
	first, err := pe.m.GetCertificate(hello("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	life := first.Leaf.NotAfter.Sub(first.Leaf.NotBefore)
	offset.Store(int64(time.Until(first.Leaf.NotAfter) - life/10 + time.Minute)) // past any renewal time, before expiry
	autotls.RunDueForTest(pe.m, time.Now().Add(time.Duration(offset.Load())))
	// Its failure event carries the recovered panic.
	var ev autotls.Event
	select {
	case ev = <-pe.failed:
	case <-time.After(30 * time.Second):
		t.Fatal("no failed renewal within 30s of its due time")
	}
	pe.failed <- ev // for checkRecovered
	pe.checkRecovered(t, "example.com", ev.Err)
	cur, err := pe.m.GetCertificate(hello("example.com"))
	if err != nil || cur != first {
		t.Fatalf("after the panicking renewal: got %v (cached: %v), want the first certificate still served", err, autotls.CachedForTest(pe.m, "example.com"))
	}
}
