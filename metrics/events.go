package metrics

import (
	"time"

	"github.com/tlsmint/tlsmint/autotls"
)

// flushPending is the number of names with pending events past which
// OnEvent applies them to the table itself, when no scrape holds it, so
// that a collector nobody scrapes does not pile them up.
const flushPending = 4096

// OnEvent records a Manager event: it counts issuances, times them, keeps
// the rate limits the CA asked for, and updates the collector's copy of
// the name's state until the next read of the Manager's snapshot. Call it
// from Manager.OnEvent, before or after your own handling:
//
//	m.OnEvent = func(e autotls.Event) {
//		c.OnEvent(e)
//		myHandler(e)
//	}
//
// It is safe for concurrent use and does not block on a scrape.
func (c *Collector) OnEvent(e autotls.Event) {
	now := c.now()
	switch e.Type {
	case autotls.EventObtained, autotls.EventRenewed, autotls.EventReplaced:
		c.issuance.WithLabelValues(labelValue(e.Issuer), resultSuccess).Inc()
		c.issued(e.Name, e.Issuer, resultSuccess, now)
	case autotls.EventFailed:
		c.issuance.WithLabelValues(labelValue(e.Issuer), resultFailure).Inc()
		c.issued(e.Name, e.Issuer, resultFailure, now)
	case autotls.EventIssuerFailed:
		c.issuance.WithLabelValues(labelValue(e.Issuer), resultFallback).Inc()
	case autotls.EventNotRenewed:
		c.issuance.WithLabelValues(labelValue(e.Issuer), resultNotRenewed).Inc()
	case autotls.EventLoaded:
		c.issued(e.Name, "", "", now) // another node obtained it
	case autotls.EventRateLimited:
		c.rateLimits.WithLabelValues(labelValue(e.Issuer)).Inc()
		c.limited(e.Issuer, e.Name, e.RetryAt, now)
	}
	u, ok := eventUpdate(e)
	if !ok || e.Name == "" {
		return
	}
	c.pendMu.Lock()
	c.pending[e.Name] = c.pending[e.Name].then(u)
	if c.reading {
		c.replay[e.Name] = c.replay[e.Name].then(u)
	}
	flush := len(c.pending) >= flushPending
	c.pendMu.Unlock()
	if flush && c.mu.TryLock() {
		c.applyPendingLocked()
		c.mu.Unlock()
	}
}

// eventUpdate is what e says about its name's state.
func eventUpdate(e autotls.Event) (update, bool) {
	u := update{issuer: e.Issuer}
	cert := func() {
		if !e.NotAfter.IsZero() {
			u.cert, u.notAfter = true, e.NotAfter.UnixNano()
		}
	}
	plan := func() {
		u.plan, u.reason = true, e.Reason
		if !e.RenewAt.IsZero() {
			u.renewAt = e.RenewAt.UnixNano()
		}
	}
	switch e.Type {
	case autotls.EventObtained, autotls.EventRenewed, autotls.EventReplaced:
		cert()
		plan()
		u.failing, u.notStored = -1, -1
	case autotls.EventLoaded:
		cert()
		plan()
		u.notStored = -1
	case autotls.EventScheduled:
		cert()
		plan()
	case autotls.EventFailed, autotls.EventExpiring:
		cert() // the certificate still served, if any, with its issuer
		u.failing = 1
	case autotls.EventExpired:
		u.failing = 1
	case autotls.EventNotStored:
		cert()
		u.notStored = 1
	case autotls.EventStored:
		u.notStored = -1
	default:
		return update{}, false
	}
	return u, true
}

// applyPendingLocked applies the pending events to the table. c.mu is
// held.
func (c *Collector) applyPendingLocked() {
	c.pendMu.Lock()
	p := c.pending
	if len(p) == 0 {
		// Nothing to apply; p is still the live map, which OnEvent may
		// be writing as soon as pendMu is released: never range over it.
		c.pendMu.Unlock()
		return
	}
	c.pending = make(map[string]update)
	c.pendMu.Unlock()
	for name, u := range p {
		c.tab.apply(name, u)
	}
}

// maxStarts caps the issuances being timed; startTTL is when a start
// that no event ended is forgotten (an issuance ends within ten minutes).
const (
	maxStarts = 10000
	startTTL  = time.Hour
)

// started notes the start of an issuance: the first newOrder for name
// since its last issuance ended.
func (c *Collector) started(name string, at time.Time) {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if _, ok := c.starts[name]; ok {
		return
	}
	if len(c.starts) >= maxStarts {
		for n, t := range c.starts {
			if at.Sub(t) > startTTL {
				delete(c.starts, n)
			}
		}
		if len(c.starts) >= maxStarts {
			return
		}
	}
	c.starts[name] = at
}

// issued ends the timing of name's issuance, observing it when result is
// not empty.
func (c *Collector) issued(name, issuer, result string, now time.Time) {
	c.lifeMu.Lock()
	start, ok := c.starts[name]
	delete(c.starts, name)
	c.lifeMu.Unlock()
	if ok && result != "" {
		c.issuanceDuration.WithLabelValues(labelValue(issuer), result).Observe(max(now.Sub(start), 0).Seconds())
	}
}
