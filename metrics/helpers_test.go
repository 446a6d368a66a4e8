package metrics

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/record"
)

// env is a test CA plus the challenge servers its validation authority
// reaches (http-01 on HTTPPort, tls-alpn-01 on TLSPort), which answer for
// the env's Manager.
type env struct {
	ca *testpebble.CA
	ch *testsetup.Challenges
}

func newEnv(t testing.TB, opts testpebble.Options) *env {
	t.Helper()
	ca := testsetup.CA(t, opts)
	return &env{ca: ca, ch: testsetup.NewChallenges(t, ca)}
}

// manager returns a Manager pointed at the test CA, wired to a new
// Collector made with opts; the Collector is closed after the Manager.
func (e *env) manager(t testing.TB, opts Options) (*autotls.Manager, *Collector) {
	t.Helper()
	var c *Collector
	m := testsetup.Manager(t, e.ca, nil, func(m *autotls.Manager) {
		c = New(m, opts)
		m.ACMEObserver = c
		m.OnEvent = c.OnEvent
		t.Cleanup(func() { c.Close() })
	}, "example.com", "*.example.com")
	e.ch.Use(m)
	return m, c
}

// ctxT is testsetup.Context, under the name the tests use.
func ctxT(t testing.TB) context.Context { return testsetup.Context(t) }

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fake returns a collector over a simulated list of certificates, on clk.
func fake(infos []record.Certificate, opts Options, clk *clock) *Collector {
	c := New(nil, opts)
	c.source = func(context.Context) ([]record.Certificate, error) { return infos, nil }
	c.now = clk.now
	return c
}

// scrape serves c through promhttp, as Prometheus would see it, and parses
// the exposition text.
func scrape(t testing.TB, c prometheus.Collector) metricsText {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatalf("Register: %v", err)
	}
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Accept", "text/plain")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: got status %d, want 200", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the exposition text: %v", err)
	}
	return metricsText(fams)
}

// lint fails the test on any problem testutil.CollectAndLint finds.
func lint(t testing.TB, c prometheus.Collector) {
	t.Helper()
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatalf("CollectAndLint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// metricsText is a parsed scrape.
type metricsText map[string]*dto.MetricFamily

// series returns the series of family name whose labels include want.
func (m metricsText) series(name string, want map[string]string) []*dto.Metric {
	f := m[name]
	if f == nil {
		return nil
	}
	var out []*dto.Metric
next:
	for _, s := range f.GetMetric() {
		for k, v := range want {
			if label(s, k) != v {
				continue next
			}
		}
		out = append(out, s)
	}
	return out
}

// value returns the one series of name with labels want (as "k=v" pairs):
// its gauge or counter value, or its histogram's count.
func (m metricsText) value(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	v, ok := m.lookup(name, labels...)
	if !ok {
		t.Fatalf("%s%v: got no series, want one", name, labels)
	}
	return v
}

func (m metricsText) lookup(name string, labels ...string) (float64, bool) {
	want := map[string]string{}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		want[k] = v
	}
	s := m.series(name, want)
	if len(s) != 1 {
		return 0, false
	}
	switch {
	case s[0].Gauge != nil:
		return s[0].Gauge.GetValue(), true
	case s[0].Counter != nil:
		return s[0].Counter.GetValue(), true
	case s[0].Histogram != nil:
		return float64(s[0].Histogram.GetSampleCount()), true
	}
	return 0, false
}

// sum adds the values of every series of name whose labels include those
// given.
func (m metricsText) sum(name string, labels ...string) float64 {
	want := map[string]string{}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		want[k] = v
	}
	total := 0.0
	for _, s := range m.series(name, want) {
		switch {
		case s.Gauge != nil:
			total += s.Gauge.GetValue()
		case s.Counter != nil:
			total += s.Counter.GetValue()
		case s.Histogram != nil:
			total += float64(s.Histogram.GetSampleCount())
		}
	}
	return total
}

// names returns the sorted name labels of name's series.
func (m metricsText) names(name string) []string {
	var out []string
	for _, s := range m.series(name, nil) {
		out = append(out, label(s, "name"))
	}
	sort.Strings(out)
	return out
}

func label(s *dto.Metric, k string) string {
	for _, l := range s.GetLabel() {
		if l.GetName() == k {
			return l.GetValue()
		}
	}
	return ""
}
