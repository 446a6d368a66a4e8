package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// nameKey is a name at an issuer.
type nameKey struct{ issuer, name string }

// limited notes that issuer asked not to order name again until until.
// At most maxNames are kept: when full, those that are over go first,
// then the one that ends soonest, if it ends before until.
func (c *Collector) limited(issuer, name string, until, now time.Time) {
	if c.maxNames <= 0 || name == "" || !until.After(now) {
		return
	}
	k := nameKey{issuer, name}
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if _, ok := c.rateLimited[k]; !ok && len(c.rateLimited) >= c.maxNames {
		var soonest nameKey
		var end time.Time
		for k2, t := range c.rateLimited {
			if !t.After(now) {
				delete(c.rateLimited, k2)
				continue
			}
			if end.IsZero() || t.Before(end) {
				soonest, end = k2, t
			}
		}
		if len(c.rateLimited) >= c.maxNames {
			if !end.Before(until) {
				return
			}
			delete(c.rateLimited, soonest)
		}
	}
	c.rateLimited[k] = until
}

// collectRateLimits reports the waits still running and forgets the
// others.
func (c *Collector) collectRateLimits(ch chan<- prometheus.Metric) {
	now := c.now()
	type limit struct {
		k     nameKey
		until time.Time
	}
	c.lifeMu.Lock()
	out := make([]limit, 0, len(c.rateLimited))
	for k, t := range c.rateLimited {
		if !t.After(now) {
			delete(c.rateLimited, k)
			continue
		}
		out = append(out, limit{k, t})
	}
	c.lifeMu.Unlock()
	for _, l := range out {
		ch <- prometheus.MustNewConstMetric(c.d.rateLimitedUntil, prometheus.GaugeValue, seconds(l.until.UnixNano()), labelValue(l.k.name), labelValue(l.k.issuer))
	}
}
