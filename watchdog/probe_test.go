package watchdog_test

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/watchdog"
)

func TestProbeReportsEveryTarget(t *testing.T) {
	ca := newTestCA(t)
	now := time.Now()
	healthy := testsetup.ServeCertificate(t, ca.leaf(t, now.Add(-time.Hour), now.Add(90*day), "healthy.test"))
	expiring := testsetup.ServeCertificate(t, ca.leaf(t, now.Add(-80*day), now.Add(2*day), "expiring.test"))
	down := closedAddr(t)
	targets := []watchdog.Target{
		{Addr: healthy, ServerName: "healthy.test"},
		{Addr: expiring, ServerName: "expiring.test"},
		{Addr: down, ServerName: "down.test"},
	}
	var got, problems []string
	w := &watchdog.Watchdog{
		Targets:   targets,
		Roots:     ca.pool,
		OnResult:  func(r watchdog.Result) { got = append(got, r.Target.ServerName) },
		OnProblem: func(r watchdog.Result) { problems = append(problems, r.Target.ServerName) },
	}
	defer w.Close()
	if last := w.Last(); last != nil {
		t.Errorf("Last before a round: got %d results, want nil", len(last))
	}
	results, err := w.Probe(ctxT(t))
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	if len(results) != len(targets) {
		t.Fatalf("got %d results, want %d", len(results), len(targets))
	}
	wantProblems := [][]error{nil, {watchdog.ErrExpiringSoon}, {watchdog.ErrUnreachable}}
	for i, r := range results {
		if r.Target != targets[i] {
			t.Errorf("result %d: got target %v, want %v", i, r.Target, targets[i])
		}
		checkProblems(t, r, wantProblems[i]...)
	}
	if want := []string{"healthy.test", "expiring.test", "down.test"}; !equal(got, want) {
		t.Errorf("OnResult: got %v, want %v", got, want)
	}
	if want := []string{"expiring.test", "down.test"}; !equal(problems, want) {
		t.Errorf("OnProblem: got %v, want %v", problems, want)
	}
	last := w.Last()
	if len(last) != len(results) {
		t.Fatalf("Last: got %d results, want %d", len(last), len(results))
	}
	for i := range last {
		if last[i].Target != results[i].Target || last[i].Serial() != results[i].Serial() {
			t.Errorf("Last[%d]: got %v %s, want %v %s", i, last[i].Target, last[i].Serial(), results[i].Target, results[i].Serial())
		}
	}
}

func TestProbeCancelled(t *testing.T) {
	ca := newTestCA(t)
	now := time.Now()
	addr := testsetup.ServeCertificate(t, ca.leaf(t, now.Add(-time.Hour), now.Add(90*day), "healthy.test"))
	called := false
	w := &watchdog.Watchdog{Targets: []watchdog.Target{{Addr: addr}}, OnResult: func(watchdog.Result) { called = true }}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := w.Probe(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Probe: got %v, want context.Canceled", err)
	}
	if called || w.Last() != nil {
		t.Errorf("cancelled round: got OnResult called %v, Last %v; want neither", called, w.Last())
	}
}

// TestConcurrencyBound serves every handshake in memory and holds each in
// GetCertificate until released, one at a time: at every step exactly
// Concurrency handshakes (or what is left) are in flight.
func TestConcurrencyBound(t *testing.T) {
	for _, tt := range []struct {
		name        string
		concurrency int
		want        int
	}{
		{name: "default", concurrency: 0, want: watchdog.DefaultConcurrency},
		{name: "two", concurrency: 2, want: 2},
		{name: "one", concurrency: 1, want: 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ca := newTestCA(t)
				cert := ca.leaf(t, time.Now().Add(-time.Hour), time.Now().Add(90*day), "pipe.test")
				var (
					mu       sync.Mutex
					inFlight int
				)
				release := make(chan struct{})
				cfg := &tls.Config{SessionTicketsDisabled: true, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
					mu.Lock()
					inFlight++
					mu.Unlock()
					<-release
					mu.Lock()
					inFlight--
					mu.Unlock()
					return &cert, nil
				}}
				const n = 9
				var targets []watchdog.Target
				for range n {
					targets = append(targets, watchdog.Target{Addr: "pipe.test:443"})
				}
				w := &watchdog.Watchdog{Targets: targets, Roots: ca.pool, Concurrency: tt.concurrency, DialContext: pipeDialer(cfg)}
				done := make(chan []watchdog.Result)
				go func() {
					rs, err := w.Probe(context.Background())
					if err != nil {
						t.Errorf("Probe: %v", err)
					}
					done <- rs
				}()
				for i := range n {
					synctest.Wait()
					mu.Lock()
					got := inFlight
					mu.Unlock()
					if want := min(tt.want, n-i); got != want {
						t.Errorf("after %d handshakes: got %d in flight, want %d", i, got, want)
					}
					release <- struct{}{}
				}
				for i, r := range <-done {
					if !r.OK() {
						t.Errorf("result %d: got %v, want no problem", i, r.Err())
					}
				}
			})
		})
	}
}

// TestLoop runs the loop in a bubble: a round at Start, the next one
// Interval later, a panicking callback that does not stop it, and Close.
func TestLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ca := newTestCA(t)
		cert := ca.leaf(t, time.Now().Add(-time.Hour), time.Now().Add(90*day), "pipe.test")
		cfg := &tls.Config{SessionTicketsDisabled: true, Certificates: []tls.Certificate{cert}}
		var (
			mu     sync.Mutex
			rounds int
		)
		count := func() int { mu.Lock(); defer mu.Unlock(); return rounds }
		w := &watchdog.Watchdog{
			Targets:     []watchdog.Target{{Addr: "pipe.test:443"}},
			Roots:       ca.pool,
			Interval:    time.Minute,
			DialContext: pipeDialer(cfg),
			OnResult: func(watchdog.Result) {
				mu.Lock()
				rounds++
				first := rounds == 1
				mu.Unlock()
				if first {
					panic("callback failure")
				}
			},
		}
		if err := w.Start(); err != nil {
			t.Fatalf("Start: %v", err)
		}
		if err := w.Start(); !errors.Is(err, watchdog.ErrStarted) {
			t.Errorf("second Start: got %v, want ErrStarted", err)
		}
		synctest.Wait()
		if got := count(); got != 1 {
			t.Errorf("rounds after Start: got %d, want 1", got)
		}
		time.Sleep(time.Minute - time.Second)
		synctest.Wait()
		if got := count(); got != 1 {
			t.Errorf("rounds before Interval: got %d, want 1", got)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if got := count(); got != 2 {
			t.Errorf("rounds after Interval: got %d, want 2", got)
		}
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if got := count(); got != 2 {
			t.Errorf("rounds after Close: got %d, want 2", got)
		}
		if len(w.Last()) != 1 {
			t.Errorf("Last after Close: got %d results, want 1", len(w.Last()))
		}
		if err := w.Start(); !errors.Is(err, watchdog.ErrClosed) {
			t.Errorf("Start after Close: got %v, want ErrClosed", err)
		}
		if _, err := w.Probe(context.Background()); !errors.Is(err, watchdog.ErrClosed) {
			t.Errorf("Probe after Close: got %v, want ErrClosed", err)
		}
		if _, err := w.Check(context.Background(), watchdog.Target{Addr: "pipe.test:443"}); !errors.Is(err, watchdog.ErrClosed) {
			t.Errorf("Check after Close: got %v, want ErrClosed", err)
		}
		if err := w.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

// failingSource lists some certificates and fails.
type failingSource struct{ infos []record.Certificate }

func (s failingSource) Certificates(context.Context) ([]record.Certificate, error) {
	return s.infos, errors.New("storage down")
}

func TestProbeManagerListFails(t *testing.T) {
	ca := newTestCA(t)
	now := time.Now()
	cert := ca.leaf(t, now.Add(-time.Hour), now.Add(90*day), "a.test", "b.test")
	addr := testsetup.ServeCertificate(t, cert)
	held := record.Certificate{Name: "a.test", Serial: hex.EncodeToString(cert.Leaf.SerialNumber.Bytes()), NotAfter: cert.Leaf.NotAfter}
	w := &watchdog.Watchdog{
		Manager:   failingSource{infos: []record.Certificate{held}},
		Listeners: []string{addr},
		Names:     []string{"a.test", "b.test"},
		Roots:     ca.pool,
	}
	results, err := w.Probe(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "storage down") {
		t.Errorf("Probe: got %v, want the listing error", err)
	}
	if len(results) != 2 {
		t.Fatalf("got %d results, want 2", len(results))
	}
	checkProblems(t, results[0])
	if results[0].Held == nil || results[0].Held.Serial != held.Serial {
		t.Errorf("Held: got %+v, want serial %s", results[0].Held, held.Serial)
	}
	checkProblems(t, results[1], watchdog.ErrNotManagerCertificate)
	if !strings.Contains(results[1].Err().Error(), "storage down") {
		t.Errorf("got %v, want the listing error in the problem", results[1].Err())
	}
}

func equal(a, b []string) bool { return slices.Equal(a, b) }

// staticSource lists fixed certificates.
type staticSource []record.Certificate

func (s staticSource) Certificates(context.Context) ([]record.Certificate, error) { return s, nil }

func TestListenerNames(t *testing.T) {
	ca := newTestCA(t)
	now := time.Now()
	cert := ca.leaf(t, now.Add(-time.Hour), now.Add(90*day), "b.test", "a.test", "x.w.test", "pending.test")
	addr := testsetup.ServeCertificate(t, cert)
	info := func(name string) record.Certificate {
		return record.Certificate{Name: name, Serial: hex.EncodeToString(cert.Leaf.SerialNumber.Bytes()), NotAfter: cert.Leaf.NotAfter}
	}
	src := staticSource{info("b.test"), info("a.test"), info("*.w.test"), {Name: "pending.test", Managed: true}}

	tests := []struct {
		name      string
		manager   watchdog.Source
		names     []string
		wantNames []string
		wantHeld  []string
		want      error
	}{
		{name: "every name held, sorted, without wildcards and names without a certificate", manager: src,
			wantNames: []string{"a.test", "b.test"}, wantHeld: []string{"a.test", "b.test"}},
		{name: "a name under a wildcard", manager: src, names: []string{"x.w.test"},
			wantNames: []string{"x.w.test"}, wantHeld: []string{"*.w.test"}},
		{name: "a name without a certificate", manager: src, names: []string{"pending.test"},
			wantNames: []string{"pending.test"}, wantHeld: []string{""}, want: watchdog.ErrNotManagerCertificate},
		{name: "no Manager, no names", wantNames: nil},
		{name: "no Manager", names: []string{"a.test"}, wantNames: []string{"a.test"}, wantHeld: []string{""},
			want: watchdog.ErrInvalidTarget},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &watchdog.Watchdog{Manager: tt.manager, Listeners: []string{addr}, Names: tt.names, Roots: ca.pool}
			results, err := w.Probe(ctxT(t))
			if err != nil {
				t.Fatalf("Probe: %v", err)
			}
			var names, helds []string
			for _, r := range results {
				names = append(names, r.Target.ServerName)
				h := ""
				if r.Held != nil {
					h = r.Held.Name
				}
				helds = append(helds, h)
				if tt.want == nil {
					checkProblems(t, r)
				} else {
					checkProblems(t, r, tt.want)
				}
			}
			if !equal(names, tt.wantNames) {
				t.Errorf("names probed: got %v, want %v", names, tt.wantNames)
			}
			if !equal(helds, tt.wantHeld) {
				t.Errorf("held: got %v, want %v", helds, tt.wantHeld)
			}
		})
	}
}
