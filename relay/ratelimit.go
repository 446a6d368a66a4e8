package relay

import (
	"fmt"
	"net/http"
	"time"

	"github.com/tlsmint/tlsmint/acme"
)

// The default limits, applied where a Policy's limit is zero (documented
// in docs/relay.md). A limit of Orders -1 is no limit.
const (
	// DefaultTenantOrders new orders per DefaultTenantOrdersPeriod for
	// all the accounts of a tenant together (Policy.RateLimit).
	DefaultTenantOrders       = 1000
	DefaultTenantOrdersPeriod = time.Hour
	// DefaultAccountOrders new orders per DefaultAccountOrdersPeriod for
	// each account (Policy.AccountRateLimit), Let's Encrypt's figure.
	DefaultAccountOrders       = 300
	DefaultAccountOrdersPeriod = 3 * time.Hour
	// DefaultAccountFailedValidations failed validations per
	// DefaultFailedValidationsPeriod for each account
	// (Policy.FailedValidationLimit).
	DefaultAccountFailedValidations = 30
	// DefaultTenantFailedValidations failed validations per
	// DefaultFailedValidationsPeriod for a tenant's accounts together
	// (Policy.TenantFailedValidationLimit).
	DefaultTenantFailedValidations = 300
	DefaultFailedValidationsPeriod = time.Hour
)

// anonymousKey names the anonymous accounts' tenant in storage keys ('@'
// is not allowed in tenant IDs).
const anonymousKey = "@anonymous"

// Storage prefixes of the rate records other than the tenants' new
// orders (keyRates, "rate/<tenant>").
const (
	keyRateAccountOrders = keyRoot + "rate-account/"        // <account>: rateRecord
	keyRateTenantFailed  = keyRoot + "rate-failed/"         // <tenant>: rateRecord
	keyRateAccountFailed = keyRoot + "rate-account-failed/" // <account>: rateRecord
	rateBuckets          = 60                               // a record holds at most this many buckets
)

// A rateRecord counts a limit's recent events in buckets of a
// sixtieth of its period, so that it stays small whatever the limit.
// Orders is the form of records stored before buckets (one time per
// order), read and converted.
type rateRecord struct {
	Orders  []time.Time  `json:"orders,omitempty"`
	Buckets []rateBucket `json:"buckets,omitempty"`
	// Expires is when the last event counted leaves the window: the
	// sweeper deletes the record then.
	Expires time.Time `json:"expires,omitzero"`
}

// A rateBucket is the number of events from Start for a bucket's width.
type rateBucket struct {
	Start time.Time `json:"start"`
	N     int       `json:"n"`
}

// effective returns the limit in force: lim, or def when lim is zero;
// ok is false for no limit (Orders < 0).
func (lim RateLimit) effective(def RateLimit) (RateLimit, bool) {
	if lim.Orders == 0 {
		lim = def
	}
	return lim, lim.Orders > 0 && lim.Period > 0
}

// count returns the events within the period before now (a bucket is
// counted while any part of it is: the count is never less than the
// true one) and drops older buckets.
func (r *rateRecord) count(lim RateLimit, now time.Time) int {
	width := lim.Period / rateBuckets
	for _, t := range r.Orders {
		r.add(t, width)
	}
	r.Orders = nil
	cut := now.Add(-lim.Period)
	kept := r.Buckets[:0]
	n := 0
	for _, b := range r.Buckets {
		if b.Start.Add(width).After(cut) {
			kept = append(kept, b)
			n += b.N
		}
	}
	r.Buckets = kept
	return n
}

// add counts one event at t.
func (r *rateRecord) add(t time.Time, width time.Duration) {
	start := t.Truncate(max(width, time.Nanosecond))
	if n := len(r.Buckets); n > 0 && r.Buckets[n-1].Start.Equal(start) {
		r.Buckets[n-1].N++
		return
	}
	r.Buckets = append(r.Buckets, rateBucket{Start: start, N: 1})
	if len(r.Buckets) > rateBuckets+1 {
		r.Buckets = r.Buckets[len(r.Buckets)-rateBuckets-1:]
	}
}

// retryAfter returns how long until one more event is allowed, with n
// events counted.
func (r *rateRecord) retryAfter(lim RateLimit, n int, now time.Time) time.Duration {
	width := lim.Period / rateBuckets
	for _, b := range r.Buckets {
		n -= b.N
		if n < lim.Orders {
			return max(b.Start.Add(width).Add(lim.Period).Sub(now), time.Second)
		}
	}
	return lim.Period
}

// A rateKey is one limit on one subject: the storage key of its record,
// the limit, and what the problem says of it.
type rateKey struct {
	key  string
	lim  RateLimit
	what string // "this account", "this account's tenant"
	verb string // "place orders", "fail validations"
}

// ordersLimits are the limits a new order counts against.
func (c *call) ordersLimits(a *accountRecord, pol *Policy) []rateKey {
	var out []rateKey
	if lim, ok := pol.AccountRateLimit.effective(RateLimit{DefaultAccountOrders, DefaultAccountOrdersPeriod}); ok {
		out = append(out, rateKey{keyRateAccountOrders + a.ID, lim, "this account", "place"})
	}
	if lim, ok := pol.RateLimit.effective(RateLimit{DefaultTenantOrders, DefaultTenantOrdersPeriod}); ok {
		out = append(out, rateKey{keyRates + tenantKey(a.Tenant), lim, "this account's tenant", "place"})
	}
	return out
}

// failureLimits are the limits a failed validation counts against.
func (c *call) failureLimits(a *accountRecord, pol *Policy) []rateKey {
	var out []rateKey
	if lim, ok := pol.FailedValidationLimit.effective(RateLimit{DefaultAccountFailedValidations, DefaultFailedValidationsPeriod}); ok {
		out = append(out, rateKey{keyRateAccountFailed + a.ID, lim, "this account", "fail"})
	}
	if lim, ok := pol.TenantFailedValidationLimit.effective(RateLimit{DefaultTenantFailedValidations, DefaultFailedValidationsPeriod}); ok {
		out = append(out, rateKey{keyRateTenantFailed + tenantKey(a.Tenant), lim, "this account's tenant", "fail"})
	}
	return out
}

func tenantKey(tenant string) string {
	if tenant == "" {
		return anonymousKey
	}
	return tenant
}

// limited returns the rateLimited problem of the first of keys that is
// used up, or nil; with take, it also counts one event against each of
// them (when none is used up). Each record is read and written under its
// lock, so the counts are shared by every replica on the storage.
func (c *call) limited(keys []rateKey, take bool) *acme.Problem {
	now := c.s.now().UTC()
	recs := make([]rateRecord, len(keys))
	for i, k := range keys {
		if take {
			unlock, err := c.s.lock(c.ctx, k.key[len(keyRoot):])
			if err != nil {
				return c.storageFailed(err)
			}
			defer unlock()
		}
		if err := c.s.load(c.ctx, k.key, &recs[i]); err != nil && !isNotFound(err) {
			return c.storageFailed(err)
		}
		if n := recs[i].count(k.lim, now); n >= k.lim.Orders {
			noun := "orders"
			if k.verb == "fail" {
				noun = "failed validations"
			}
			p := problem(probRateLimited, http.StatusTooManyRequests, "%s may have %d %s per %s", k.what, k.lim.Orders, noun, fmtPeriod(k.lim.Period))
			p.RetryAfter = recs[i].retryAfter(k.lim, n, now)
			return p
		}
	}
	if !take {
		return nil
	}
	for i, k := range keys {
		recs[i].add(now, k.lim.Period/rateBuckets)
		recs[i].Expires = now.Add(k.lim.Period + k.lim.Period/rateBuckets)
		if err := c.s.save(c.ctx, k.key, &recs[i]); err != nil {
			return c.storageFailed(err)
		}
	}
	return nil
}

// record counts one event against each of keys, used up or not (a
// failed validation that ran).
func (c *call) record(keys []rateKey) *acme.Problem {
	now := c.s.now().UTC()
	for _, k := range keys {
		if p := func() *acme.Problem {
			unlock, err := c.s.lock(c.ctx, k.key[len(keyRoot):])
			if err != nil {
				return c.storageFailed(err)
			}
			defer unlock()
			var rec rateRecord
			if err := c.s.load(c.ctx, k.key, &rec); err != nil && !isNotFound(err) {
				return c.storageFailed(err)
			}
			rec.count(k.lim, now)
			rec.add(now, k.lim.Period/rateBuckets)
			rec.Expires = now.Add(k.lim.Period + k.lim.Period/rateBuckets)
			if err := c.s.save(c.ctx, k.key, &rec); err != nil {
				return c.storageFailed(err)
			}
			return nil
		}(); p != nil {
			return p
		}
	}
	return nil
}

// fmtPeriod writes a period as people do: "1h", "3h", "30m".
func fmtPeriod(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}
