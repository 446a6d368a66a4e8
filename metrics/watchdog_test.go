package metrics

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/watchdog"
)

// selfSignedFor returns a certificate for name valid from nb to na that
// signs itself.
func selfSignedFor(t *testing.T, name string, nb, na time.Time) tls.Certificate {
	t.Helper()
	return testsetup.SelfSigned(t, &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), DNSNames: []string{name},
		NotBefore: nb, NotAfter: na, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
}

// serveSwappable serves the certificate in cur on a loopback listener.
func serveSwappable(t *testing.T, cur *atomic.Pointer[tls.Certificate]) string {
	t.Helper()
	return testsetup.ServeTLS(t, "127.0.0.1:0", &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cur.Load(), nil }})
}

// TestWatchdogSeries: a watchdog's results fed to ObserveProbe show up as
// counts by result and problem, the failing targets with their problems,
// and the last probe time; a target fixed drops its series.
func TestWatchdogSeries(t *testing.T) {
	now := time.Now()
	day := 24 * time.Hour
	healthy := selfSignedFor(t, "healthy.test", now.Add(-time.Hour), now.Add(90*day))
	expiring := selfSignedFor(t, "expiring.test", now.Add(-80*day), now.Add(day))
	stranger := selfSignedFor(t, "stranger.test", now.Add(-time.Hour), now.Add(90*day))
	roots := x509.NewCertPool()
	roots.AddCert(healthy.Leaf)
	roots.AddCert(expiring.Leaf)
	var h, e, s atomic.Pointer[tls.Certificate]
	h.Store(&healthy)
	e.Store(&expiring)
	s.Store(&stranger)
	addrH, addrE, addrS := serveSwappable(t, &h), serveSwappable(t, &e), serveSwappable(t, &s)

	c := New(nil, Options{})
	defer c.Close()
	w := &watchdog.Watchdog{
		Targets: []watchdog.Target{
			{Addr: addrH, ServerName: "healthy.test"},
			{Addr: addrE, ServerName: "expiring.test"},
			{Addr: addrS, ServerName: "stranger.test"},
		},
		Roots:    roots,
		OnResult: c.ObserveProbe,
	}
	defer w.Close()
	results, err := w.Probe(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	got := scrape(t, c)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"tlsmint_watchdog_probes_total", []string{"result=ok"}, 1},
		{"tlsmint_watchdog_probes_total", []string{"result=problem"}, 2},
		{"tlsmint_watchdog_problems_total", []string{"problem=expiring_soon"}, 1},
		{"tlsmint_watchdog_problems_total", []string{"problem=untrusted"}, 1},
		{"tlsmint_watchdog_targets_failing", nil, 2},
		{"tlsmint_watchdog_target_problem", []string{"target=" + addrE, "server_name=expiring.test", "problem=expiring_soon"}, 1},
		{"tlsmint_watchdog_target_problem", []string{"target=" + addrS, "server_name=stranger.test", "problem=untrusted"}, 1},
	} {
		if v := got.value(t, tc.name, tc.labels...); v != tc.want {
			t.Errorf("%s%v: got %v, want %v", tc.name, tc.labels, v, tc.want)
		}
	}
	if _, ok := got.lookup("tlsmint_watchdog_target_problem", "server_name=healthy.test"); ok {
		t.Errorf("a series for the healthy target")
	}
	if v := got.value(t, "tlsmint_watchdog_last_probe_timestamp_seconds"); v < float64(results[0].Time.Unix()) {
		t.Errorf("last_probe_timestamp_seconds: got %v, want at least %d", v, results[0].Time.Unix())
	}
	lint(t, c)

	// The expiring certificate is replaced: its series go.
	fresh := selfSignedFor(t, "expiring.test", now.Add(-time.Hour), now.Add(90*day))
	roots.AddCert(fresh.Leaf)
	e.Store(&fresh)
	if _, err := w.Probe(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	got = scrape(t, c)
	if v := got.value(t, "tlsmint_watchdog_targets_failing"); v != 1 {
		t.Errorf("targets_failing after the fix: got %v, want 1", v)
	}
	if _, ok := got.lookup("tlsmint_watchdog_target_problem", "server_name=expiring.test"); ok {
		t.Errorf("the fixed target still has a problem series")
	}
	if v := got.value(t, "tlsmint_watchdog_probes_total", "result=ok"); v != 3 {
		t.Errorf("probes_total{ok}: got %v, want 3", v)
	}
}

// A revoked certificate the watchdog found is its own problem series.
func TestWatchdogRevokedSeries(t *testing.T) {
	c := New(nil, Options{})
	defer c.Close()
	leaf := selfSignedFor(t, "revoked.test", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	c.ObserveProbe(watchdog.Result{
		Target: watchdog.Target{Addr: "192.0.2.1:443", ServerName: "revoked.test"}, Time: time.Now(),
		Chain:    []*x509.Certificate{leaf.Leaf},
		Problems: []error{fmt.Errorf("%w: at 2026-01-01T00:00:00Z", watchdog.ErrRevoked)},
	})
	got := scrape(t, c)
	if v := got.value(t, "tlsmint_watchdog_problems_total", "problem=revoked"); v != 1 {
		t.Errorf("problems_total{revoked}: got %v, want 1", v)
	}
	if v := got.value(t, "tlsmint_watchdog_target_problem", "server_name=revoked.test", "problem=revoked"); v != 1 {
		t.Errorf("target_problem{revoked}: got %v, want 1", v)
	}
}
