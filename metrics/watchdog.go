package metrics

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tlsmint/tlsmint/watchdog"
)

// probeKey identifies a watchdog target in the series.
type probeKey struct{ target, serverName string }

// probes is what ObserveProbe keeps: the counters, the targets whose last
// result had problems (with the problems' names), and the last result's
// time.
type probes struct {
	mu       sync.Mutex
	failing  map[probeKey][]string
	last     time.Time
	total    *prometheus.CounterVec
	problems *prometheus.CounterVec

	failingDesc, targetDesc, lastDesc *prometheus.Desc
}

func newProbes(labels prometheus.Labels) *probes {
	return &probes{
		failing: make(map[probeKey][]string),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			ConstLabels: labels,
			Name:        "tlsmint_watchdog_probes_total",
			Help:        "Watchdog probes of served certificates by result: ok, or problem (at least one problem found).",
		}, []string{"result"}),
		problems: prometheus.NewCounterVec(prometheus.CounterOpts{
			ConstLabels: labels,
			Name:        "tlsmint_watchdog_problems_total",
			Help:        "Problems the watchdog found in what is served, by problem: revoked, expired, expiring_soon, not_yet_valid, name_mismatch, untrusted, not_manager_certificate, unreachable, handshake, invalid_target, other.",
		}, []string{"problem"}),
		failingDesc: prometheus.NewDesc("tlsmint_watchdog_targets_failing",
			"Watchdog targets whose last probe found a problem.", nil, labels),
		targetDesc: prometheus.NewDesc("tlsmint_watchdog_target_problem",
			"1 for each problem the last probe of a failing target found (at most Options.MaxNames targets, by address and server name); healthy targets have no series.",
			[]string{"target", "server_name", "problem"}, labels),
		lastDesc: prometheus.NewDesc("tlsmint_watchdog_last_probe_timestamp_seconds",
			"When the watchdog last reported a probe, as a Unix time: alert when it stops moving.", nil, labels),
	}
}

// ObserveProbe records one result of a [watchdog.Watchdog]: set it as the
// watchdog's OnResult (or call it from yours). A target that is healthy
// again drops its tlsmint_watchdog_target_problem series. It is safe for
// concurrent use and never blocks on a scrape for long.
func (c *Collector) ObserveProbe(r watchdog.Result) {
	p := c.probes
	k := probeKey{r.Target.Addr, r.Target.ServerName}
	names := r.ProblemNames()
	if len(names) == 0 {
		p.total.WithLabelValues("ok").Inc()
	} else {
		p.total.WithLabelValues("problem").Inc()
		for _, n := range names {
			p.problems.WithLabelValues(n).Inc()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(names) == 0 {
		delete(p.failing, k)
	} else {
		p.failing[k] = names
	}
	if r.Time.After(p.last) {
		p.last = r.Time
	}
}

func (p *probes) describe(ch chan<- *prometheus.Desc) {
	p.total.Describe(ch)
	p.problems.Describe(ch)
	ch <- p.failingDesc
	ch <- p.targetDesc
	ch <- p.lastDesc
}

// collect reports the probe series; maxNames caps the failing targets
// with series of their own (sorted by address, then server name).
func (p *probes) collect(ch chan<- prometheus.Metric, maxNames int) {
	p.total.Collect(ch)
	p.problems.Collect(ch)
	type failing struct {
		k     probeKey
		names []string
	}
	p.mu.Lock()
	out := make([]failing, 0, len(p.failing))
	for k, n := range p.failing {
		out = append(out, failing{k, n})
	}
	last := p.last
	p.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(p.failingDesc, prometheus.GaugeValue, float64(len(out)))
	if !last.IsZero() {
		ch <- prometheus.MustNewConstMetric(p.lastDesc, prometheus.GaugeValue, seconds(last.UnixNano()))
	}
	slices.SortFunc(out, func(a, b failing) int {
		return cmp.Or(cmp.Compare(a.k.target, b.k.target), cmp.Compare(a.k.serverName, b.k.serverName))
	})
	for i, f := range out {
		if i >= maxNames {
			break
		}
		for _, n := range f.names {
			ch <- prometheus.MustNewConstMetric(p.targetDesc, prometheus.GaugeValue, 1, labelValue(f.k.target), labelValue(f.k.serverName), n)
		}
	}
}
