package metrics

import "github.com/prometheus/client_golang/prometheus"

// Label values of tlsmint_issuance_total's result.
const (
	resultSuccess    = "success"     // obtained, renewed or replaced
	resultFailure    = "failure"     // every issuer failed (autotls.EventFailed)
	resultFallback   = "fallback"    // one issuer failed and the next was tried
	resultNotRenewed = "not_renewed" // the policy no longer allows the name (autotls.EventNotRenewed)
)

// Label values of tlsmint_certificates' state.
const (
	stateValid   = "valid"   // a certificate that has not expired
	stateExpired = "expired" // the only certificate has expired
	stateMissing = "missing" // a managed name without a certificate yet
)

// descs are the descriptions of the series the collector builds at each
// scrape.
type descs struct {
	notAfter, renewal, ready                  *prometheus.Desc
	certificates, expiring, failing, unstored *prometheus.Desc
	omitted, rateLimitedUntil, refreshTime    *prometheus.Desc
	refused, skew                             *prometheus.Desc
}

func newDescs(labels prometheus.Labels) descs {
	nameIssuer := []string{"name", "issuer"}
	return descs{
		notAfter: prometheus.NewDesc("tlsmint_certificate_not_after_timestamp_seconds",
			"When the certificate served for the name expires (its NotAfter), as a Unix time.", nameIssuer, labels),
		renewal: prometheus.NewDesc("tlsmint_certificate_renewal_timestamp_seconds",
			"When the Manager plans to renew the certificate, as a Unix time; reason is schedule (a share of the lifetime), ari (the CA's renewal window) or ari-window-passed (the window is in the past: renew now).",
			[]string{"name", "issuer", "reason"}, labels),
		ready: prometheus.NewDesc("tlsmint_certificate_ready",
			"1 when the name has a certificate that has not expired and its last attempt to obtain or renew did not fail, else 0.", nameIssuer, labels),
		certificates: prometheus.NewDesc("tlsmint_certificates",
			"Managed names by state: valid, expired, or missing (no certificate yet). Counts every name, whatever the per-name cap.", []string{"state"}, labels),
		expiring: prometheus.NewDesc("tlsmint_certificates_expiring",
			"Certificates not yet expired that expire within 1d, 7d or 30d (each count includes the shorter ones).", []string{"within"}, labels),
		failing: prometheus.NewDesc("tlsmint_certificates_failing",
			"Names whose last attempt to obtain or renew a certificate failed.", nil, labels),
		unstored: prometheus.NewDesc("tlsmint_certificates_not_stored",
			"Certificates served from memory whose Store failed and is being retried.", nil, labels),
		omitted: prometheus.NewDesc("tlsmint_metrics_names_omitted",
			"Names left out of the per-name series (tlsmint_certificate_*) by the cap on names; the aggregates still count them.", nil, labels),
		rateLimitedUntil: prometheus.NewDesc("tlsmint_rate_limited_until_timestamp_seconds",
			"Until when the CA asked not to order the name again (rate limit or Retry-After), as a Unix time; only while that is in the future.", nameIssuer, labels),
		refreshTime: prometheus.NewDesc("tlsmint_metrics_refresh_timestamp_seconds",
			"When the collector last read the Manager's certificates (between reads, events keep its copy current), as a Unix time.", nil, labels),
		refused: prometheus.NewDesc("tlsmint_on_demand_refused_total",
			"Handshakes the Manager refused a certificate to, by reason: no_server_name (no SNI and no DefaultServerName), invalid_name (not a valid host name), not_allowed (the host policy, OnDemand.Decide or AllowIPCertificates) or on_demand_limited (OnDemand's rate limit or cap on orders in flight). Every refusal is counted, also those no event reports.",
			[]string{"reason"}, labels),
		skew: prometheus.NewDesc("tlsmint_clock_skew_seconds",
			"How far the local clock is ahead of the CA's (negative: behind), from the Date header of the CA's last answer: kind measured; kind corrected is the correction the Manager applies, the measured skew when it exceeds autotls.ClockSkewTolerance, else 0.",
			[]string{"kind"}, labels),
	}
}

func (d *descs) describe(ch chan<- *prometheus.Desc) {
	for _, x := range []*prometheus.Desc{d.notAfter, d.renewal, d.ready, d.certificates, d.expiring, d.failing, d.unstored, d.omitted, d.rateLimitedUntil, d.refreshTime, d.refused, d.skew} {
		ch <- x
	}
}

// Buckets of the duration histograms, in seconds.
func requestBuckets() []float64 {
	return []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
}

func issuanceBuckets() []float64 {
	return []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
}

func (c *Collector) initVecs(labels prometheus.Labels) {
	c.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		ConstLabels: labels,
		Name:        "tlsmint_acme_requests_total",
		Help:        "Requests to ACME CAs by issuer (directory URL), operation, final HTTP status (none when no response came) and problem type (the ACME error name, other for a type outside the ACME namespace, empty for none).",
	}, []string{"issuer", "operation", "status", "problem"})
	c.requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		ConstLabels: labels,
		Name:        "tlsmint_acme_request_duration_seconds",
		Help:        "Latency of requests to ACME CAs, transparent retries included.",
		Buckets:     requestBuckets(),
	}, []string{"issuer", "operation"})
	c.issuance = prometheus.NewCounterVec(prometheus.CounterOpts{
		ConstLabels: labels,
		Name:        "tlsmint_issuance_total",
		Help:        "Issuances and renewals by issuer and result: success, failure (every issuer failed), fallback (this issuer failed and the next was tried), not_renewed (not ordered: the host policy no longer allows the name).",
	}, []string{"issuer", "result"})
	c.issuanceDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		ConstLabels: labels,
		Name:        "tlsmint_issuance_duration_seconds",
		Help:        "Time from a name's first newOrder to its certificate being installed (success) or the issuance failing (failure), issuer fallbacks included.",
		Buckets:     issuanceBuckets(),
	}, []string{"issuer", "result"})
	c.rateLimits = prometheus.NewCounterVec(prometheus.CounterOpts{
		ConstLabels: labels,
		Name:        "tlsmint_rate_limited_total",
		Help:        "Times a CA asked to wait before ordering a name again (rate limit or Retry-After), by issuer.",
	}, []string{"issuer"})
	c.refreshErrors = prometheus.NewCounter(prometheus.CounterOpts{
		ConstLabels: labels,
		Name:        "tlsmint_metrics_refresh_errors_total",
		Help:        "Reads of the Manager's certificates that failed or were incomplete.",
	})
}
