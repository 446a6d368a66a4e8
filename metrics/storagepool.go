package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tlsmint/tlsmint/storage"
)

// poolDescs describe the tlsmint_storage_pool_* series, read at each
// scrape from a [storage.PoolReporter].
type poolDescs struct {
	conns, max                        *prometheus.Desc
	acquires, emptyAcquires, canceled *prometheus.Desc
	wait, opened, closed, broken      *prometheus.Desc
}

func newPoolDescs(labels prometheus.Labels) poolDescs {
	return poolDescs{
		conns: prometheus.NewDesc("tlsmint_storage_pool_connections",
			"Connections of the storage's pool by state: idle, in_use (by a call) or opening.", []string{"state"}, labels),
		max: prometheus.NewDesc("tlsmint_storage_pool_max_connections",
			"The most connections the storage's pool opens at once (pool_max_conns of a PostgreSQL DSN).", nil, labels),
		acquires: prometheus.NewDesc("tlsmint_storage_pool_acquires_total",
			"Calls that got a connection from the storage's pool.", nil, labels),
		emptyAcquires: prometheus.NewDesc("tlsmint_storage_pool_empty_acquires_total",
			"Calls that got a connection from the storage's pool after waiting for one, none being idle.", nil, labels),
		canceled: prometheus.NewDesc("tlsmint_storage_pool_canceled_acquires_total",
			"Calls whose context ended while they waited for a connection of the storage's pool.", nil, labels),
		wait: prometheus.NewDesc("tlsmint_storage_pool_acquire_seconds_total",
			"Time the calls took to get a connection from the storage's pool.", nil, labels),
		opened: prometheus.NewDesc("tlsmint_storage_pool_connections_opened_total",
			"Connections the storage's pool opened.", nil, labels),
		closed: prometheus.NewDesc("tlsmint_storage_pool_connections_closed_total",
			"Connections the storage's pool closed for their age, by reason: idle (pool_max_conn_idle_time) or lifetime (pool_max_conn_lifetime).", []string{"reason"}, labels),
		broken: prometheus.NewDesc("tlsmint_storage_pool_broken_connections_total",
			"Connections of the storage's pool that a call found broken (closed by the server or the network); the call ran again on a new one.", nil, labels),
	}
}

func (d *poolDescs) describe(ch chan<- *prometheus.Desc) {
	for _, x := range []*prometheus.Desc{d.conns, d.max, d.acquires, d.emptyAcquires, d.canceled, d.wait, d.opened, d.closed, d.broken} {
		ch <- x
	}
}

func (d *poolDescs) collect(ch chan<- prometheus.Metric, st storage.PoolStats) {
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	counter := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, v, labels...)
	}
	gauge(d.conns, float64(st.IdleConns), "idle")
	gauge(d.conns, float64(st.AcquiredConns), "in_use")
	gauge(d.conns, float64(st.ConstructingConns), "opening")
	gauge(d.max, float64(st.MaxConns))
	counter(d.acquires, float64(st.Acquires))
	counter(d.emptyAcquires, float64(st.EmptyAcquires))
	counter(d.canceled, float64(st.CanceledAcquires))
	counter(d.wait, st.AcquireWait.Seconds())
	counter(d.opened, float64(st.NewConns))
	counter(d.closed, float64(st.IdleCloses), "idle")
	counter(d.closed, float64(st.LifetimeCloses), "lifetime")
	counter(d.broken, float64(st.BrokenConns))
}
