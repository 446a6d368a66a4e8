package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/storage"
)

// Defaults for the zero fields of [Options].
const (
	DefaultMaxNames        = 1000
	DefaultRefreshInterval = time.Minute
	DefaultRefreshTimeout  = 30 * time.Second
)

// Options configures a [Collector]. The zero value is ready to use.
type Options struct {
	// MaxNames caps the names that get per-name series
	// (tlsmint_certificate_*): those whose certificates expire soonest,
	// names without a certificate first. The aggregates count every name
	// whatever the cap. It also caps the names tracked for
	// tlsmint_rate_limited_until_timestamp_seconds. Zero means
	// DefaultMaxNames; a negative value means no per-name series at all.
	MaxNames int

	// RefreshInterval is how old the collector's copy of the Manager's
	// certificates may get before a scrape reads them again, in the
	// background (the scrape is answered from the copy it has, kept
	// current by OnEvent in between). A read takes the Manager's shared
	// snapshot ([autotls.Manager.Snapshot], the one its status page
	// reads too: no certificate is loaded for it), which the Manager
	// rebuilds at most every autotls.SnapshotMaxAge or twenty times its
	// build time; a read that takes long is repeated no sooner than 20
	// times its duration after it started. Zero means
	// DefaultRefreshInterval; a negative value means only when
	// [Collector.Refresh] is called.
	RefreshInterval time.Duration

	// RefreshTimeout bounds one read of the Manager's snapshot. Zero
	// means DefaultRefreshTimeout.
	RefreshTimeout time.Duration

	// ConstLabels are added to every series of the collector, so that
	// the collectors of two Managers (or a Manager's and a relay's) in
	// one process register in one registry: give each a label that sets
	// it apart, such as {"manager": "public"} and {"manager": "internal"}.
	// Nil adds none; two collectors without labels (or with the same)
	// cannot be registered in one registry. Label names must be valid
	// Prometheus names and must not be one of the series' own labels
	// (name, issuer, state, …); New panics otherwise, as
	// prometheus.NewDesc would when registered.
	ConstLabels prometheus.Labels

	// Certificates, if set, is read instead of the Manager's snapshot: for
	// certificates no Manager holds, such as a server's own certificate
	// files (tlsmint relay with tls.cert_file). Nil means the Manager's.
	Certificates func(context.Context) ([]record.Certificate, error)

	// Storage is the storage whose connection pool is reported as
	// tlsmint_storage_pool_*, read at each scrape, if it implements
	// [storage.PoolReporter] (storage/postgres does). Nil means the
	// Manager's Storage.
	Storage storage.Storage
}

// A Collector is a [prometheus.Collector] for a Manager's certificates and
// its ACME traffic. Create it with [New], register it, and wire it to the
// Manager: set Manager.ACMEObserver to it and call [Collector.OnEvent] from
// Manager.OnEvent.
//
// A Collector is safe for concurrent use. A scrape may start a background
// read of the Manager's snapshot; [Collector.Close] stops and waits for it.
type Collector struct {
	maxNames        int
	refreshInterval time.Duration
	refreshTimeout  time.Duration

	// snapshot reads the Manager's shared snapshot (nil: none); source,
	// when set, replaces it with a list (Options.Certificates, or a
	// test's); now is the clock.
	snapshot, freshSnapshot func(context.Context) (*autotls.Snapshot, error)
	source                  func(context.Context) ([]record.Certificate, error)
	now                     func() time.Time
	// refusals reads the Manager's refusal counts (nil: none).
	refusals func() autotls.Refusals
	// skew reads the Manager's clock skew (nil: none).
	skew func() (measured, corrected time.Duration)
	// pool reports the storage's connection pool (nil: none).
	pool storage.PoolReporter

	d  descs
	pd poolDescs

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// refreshSem is held by the one read of the source that runs;
	// bgMu guards the fields after it.
	refreshSem chan struct{}
	bgMu       sync.Mutex
	closed     bool
	refreshed  time.Time     // when the last successful read started
	attempted  time.Time     // when the last read started
	lastTook   time.Duration // how long the last read took
	background bool          // a background read is running
	first      chan struct{} // closed when the first scrape's read ends

	// mu guards tab. Lock order: mu, then pendMu.
	mu  sync.Mutex
	tab *table

	// pendMu guards the events not yet applied to tab (pending), and,
	// while a read of the source runs (reading), those since it started
	// (replay), applied to the table the read builds.
	pendMu  sync.Mutex
	pending map[string]update
	reading bool
	replay  map[string]update

	// lifeMu guards the rate limits and issuance start times.
	lifeMu      sync.Mutex
	rateLimited map[nameKey]time.Time
	starts      map[string]time.Time

	requests         *prometheus.CounterVec
	requestDuration  *prometheus.HistogramVec
	issuance         *prometheus.CounterVec
	issuanceDuration *prometheus.HistogramVec
	rateLimits       *prometheus.CounterVec
	refreshErrors    prometheus.Counter
	probes           *probes
	decisions        *decisions
}

// New returns a Collector for m's certificates. A nil m is allowed: the
// Collector then reports only what ObserveExchange and OnEvent tell it.
// New starts nothing; m is only read (through Manager.Snapshot) when a
// scrape or Refresh needs it.
func New(m *autotls.Manager, opts Options) *Collector {
	c := &Collector{
		maxNames:        opts.MaxNames,
		refreshInterval: opts.RefreshInterval,
		refreshTimeout:  opts.RefreshTimeout,
		now:             time.Now,
		d:               newDescs(opts.ConstLabels),
		pd:              newPoolDescs(opts.ConstLabels),
		refreshSem:      make(chan struct{}, 1),
		tab:             newTable(nil),
		pending:         make(map[string]update),
		rateLimited:     make(map[nameKey]time.Time),
		starts:          make(map[string]time.Time),
		probes:          newProbes(opts.ConstLabels),
		decisions:       newDecisions(opts.ConstLabels),
	}
	if c.maxNames == 0 {
		c.maxNames = DefaultMaxNames
	}
	if c.refreshInterval == 0 {
		c.refreshInterval = DefaultRefreshInterval
	}
	if c.refreshTimeout <= 0 {
		c.refreshTimeout = DefaultRefreshTimeout
	}
	st := opts.Storage
	if m != nil {
		c.snapshot, c.freshSnapshot = m.Snapshot, m.RefreshSnapshot
		c.refusals = m.Refusals
		c.skew = m.ClockSkew
		if st == nil {
			st = m.Storage
		}
	}
	if opts.Certificates != nil {
		c.source = opts.Certificates
	}
	c.pool, _ = st.(storage.PoolReporter)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.initVecs(opts.ConstLabels)
	return c
}

// Describe implements [prometheus.Collector].
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	c.d.describe(ch)
	if c.pool != nil {
		c.pd.describe(ch)
	}
	c.requests.Describe(ch)
	c.requestDuration.Describe(ch)
	c.issuance.Describe(ch)
	c.issuanceDuration.Describe(ch)
	c.rateLimits.Describe(ch)
	c.refreshErrors.Describe(ch)
	c.probes.describe(ch)
	c.decisions.total.Describe(ch)
	c.decisions.issued.Describe(ch)
	c.decisions.unauth.Describe(ch)
}

// Collect implements [prometheus.Collector]. It reads the Manager's
// snapshot itself only for the first scrape (bounded by RefreshTimeout); later ones
// are answered from the collector's copy, and start a background read when
// it is older than RefreshInterval.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.maybeRefresh()
	c.collectCertificates(ch)
	c.collectRateLimits(ch)
	c.collectRefusals(ch)
	if c.skew != nil {
		measured, corrected := c.skew()
		ch <- prometheus.MustNewConstMetric(c.d.skew, prometheus.GaugeValue, measured.Seconds(), "measured")
		ch <- prometheus.MustNewConstMetric(c.d.skew, prometheus.GaugeValue, corrected.Seconds(), "corrected")
	}
	if c.pool != nil {
		c.pd.collect(ch, c.pool.PoolStats())
	}
	if t := c.lastRefresh(); !t.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.d.refreshTime, prometheus.GaugeValue, seconds(t.UnixNano()))
	}
	c.requests.Collect(ch)
	c.requestDuration.Collect(ch)
	c.issuance.Collect(ch)
	c.issuanceDuration.Collect(ch)
	c.rateLimits.Collect(ch)
	c.refreshErrors.Collect(ch)
	c.probes.collect(ch, c.maxNames)
	c.decisions.total.Collect(ch)
	c.decisions.issued.Collect(ch)
	c.decisions.unauth.Collect(ch)
}

// Close stops a background read of the Manager's snapshot, waits for it to
// end, and starts no other. The collector keeps answering scrapes from
// what it has. Close always returns nil.
func (c *Collector) Close() error {
	c.bgMu.Lock()
	c.closed = true
	c.bgMu.Unlock()
	c.cancel()
	c.wg.Wait()
	return nil
}

// Label values of tlsmint_on_demand_refused_total's reason.
const (
	reasonNoServerName    = "no_server_name"
	reasonInvalidName     = "invalid_name"
	reasonNotAllowed      = "not_allowed"
	reasonOnDemandLimited = "on_demand_limited"
)

// collectRefusals reports the Manager's refusal counters, read at once
// (they are counted in the Manager, every refusal, not from the paced
// EventRefused).
func (c *Collector) collectRefusals(ch chan<- prometheus.Metric) {
	if c.refusals == nil {
		return
	}
	r := c.refusals()
	for _, v := range []struct {
		reason string
		n      uint64
	}{
		{reasonNoServerName, r.NoServerName},
		{reasonInvalidName, r.InvalidName},
		{reasonNotAllowed, r.NotAllowed},
		{reasonOnDemandLimited, r.OnDemandLimited},
	} {
		ch <- prometheus.MustNewConstMetric(c.d.refused, prometheus.CounterValue, float64(v.n), v.reason)
	}
}

// seconds converts Unix nanoseconds to seconds, exactly for whole seconds.
func seconds(ns int64) float64 {
	return float64(ns/1e9) + float64(ns%1e9)/1e9
}
