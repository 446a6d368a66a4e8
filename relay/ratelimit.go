package relay

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
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

// Storage prefixes of the rate records ("rate/<tenant>" held the
// tenants' new orders before they were sharded, and is swept).
const (
	keyRateAccountOrders = keyRoot + "rate-account/"        // <account>: rateRecord
	keyRateAccountFailed = keyRoot + "rate-account-failed/" // <account>: rateRecord
	keyRateTenantOrders  = keyRoot + "rate-tenant/"         // <tenant>/<shard>: rateRecord
	keyRateTenantFailed  = keyRoot + "rate-tenant-failed/"  // <tenant>/<shard>: rateRecord
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
	// sharded: key is a folder of records, one per Server (its shard),
	// summed to count; each Server writes only its own, under a mutex
	// of its own, so that a tenant's accounts do not all wait for one
	// storage lock.
	sharded bool
}

// ordersLimits are the limits a new order counts against.
func (c *call) ordersLimits(a *accountRecord, pol *Policy) []rateKey {
	return accountTenantLimits(a, "place",
		pol.AccountRateLimit, RateLimit{DefaultAccountOrders, DefaultAccountOrdersPeriod}, keyRateAccountOrders,
		pol.RateLimit, RateLimit{DefaultTenantOrders, DefaultTenantOrdersPeriod}, keyRateTenantOrders)
}

// failureLimits are the limits a failed validation counts against.
func (c *call) failureLimits(a *accountRecord, pol *Policy) []rateKey {
	return accountTenantLimits(a, "fail",
		pol.FailedValidationLimit, RateLimit{DefaultAccountFailedValidations, DefaultFailedValidationsPeriod}, keyRateAccountFailed,
		pol.TenantFailedValidationLimit, RateLimit{DefaultTenantFailedValidations, DefaultFailedValidationsPeriod}, keyRateTenantFailed)
}

// accountTenantLimits are the in-force ones of a pair of limits on one
// verb: acct (or its default) on a's record under acctPrefix, and tenant
// (or its default) on the shards of a's tenant under tenantPrefix.
func accountTenantLimits(a *accountRecord, verb string, acct, acctDef RateLimit, acctPrefix string, tenant, tenantDef RateLimit, tenantPrefix string) []rateKey {
	var out []rateKey
	if lim, ok := acct.effective(acctDef); ok {
		out = append(out, rateKey{key: acctPrefix + a.ID, lim: lim, what: "this account", verb: verb})
	}
	if lim, ok := tenant.effective(tenantDef); ok {
		out = append(out, rateKey{key: tenantPrefix + tenantKey(a.Tenant) + "/", lim: lim, what: "this account's tenant", verb: verb, sharded: true})
	}
	return out
}

func tenantKey(tenant string) string {
	if tenant == "" {
		return anonymousKey
	}
	return tenant
}

// lockRate takes what guards k's record while it is read and written:
// the storage lock of an account's record, or this Server's mutex of a
// tenant's shards.
func (c *call) lockRate(k rateKey) (func(), *acme.Problem) {
	if k.sharded {
		mu := c.s.rateMutex(k.key)
		mu.Lock()
		return mu.Unlock, nil
	}
	unlock, err := c.s.lock(c.ctx, k.key[len(keyRoot):])
	if err != nil {
		return nil, c.storageFailed(err)
	}
	return unlock, nil
}

// loadRate returns the count of k (all its shards' buckets, merged) and
// the record this Server writes, with its key.
func (c *call) loadRate(k rateKey) (all, own rateRecord, ownKey string, _ error) {
	if !k.sharded {
		err := c.s.load(c.ctx, k.key, &own)
		if isNotFound(err) {
			err = nil
		}
		return own, own, k.key, err
	}
	ownKey = k.key + c.s.shard
	shards, err := c.s.rateShards(c.ctx)
	if err != nil {
		return all, own, ownKey, err
	}
	for _, sh := range shards {
		sk := k.key + sh
		var r rateRecord
		if err := c.s.load(c.ctx, sk, &r); err != nil {
			if isNotFound(err) {
				continue
			}
			return all, own, ownKey, err
		}
		if sk == ownKey {
			own = r
		}
		all.Buckets = append(all.Buckets, r.Buckets...)
	}
	slices.SortFunc(all.Buckets, func(a, b rateBucket) int { return a.Start.Compare(b.Start) })
	return all, own, ownKey, nil
}

// limited returns the rateLimited problem of the first of keys that is
// used up, or nil; with take, it also counts one event against each of
// them (when none is used up). The counts are shared by every replica on
// the storage: an account's record is read and written under its storage
// lock; a tenant's is one record per Server, summed, each written by its
// Server alone (replicas deciding at the same moment may together let
// through one event each beyond the limit).
func (c *call) limited(keys []rateKey, take bool) *acme.Problem {
	now := c.s.now().UTC()
	owns := make([]rateRecord, len(keys))
	ownKeys := make([]string, len(keys))
	for i, k := range keys {
		if take {
			unlock, p := c.lockRate(k)
			if p != nil {
				return p
			}
			defer unlock()
		}
		all, own, ownKey, err := c.loadRate(k)
		if err != nil {
			return c.storageFailed(err)
		}
		owns[i], ownKeys[i] = own, ownKey
		if n := all.count(k.lim, now); n >= k.lim.Orders {
			noun := "orders"
			if k.verb == "fail" {
				noun = "failed validations"
			}
			p := problem(probRateLimited, http.StatusTooManyRequests, "%s may have %d %s per %s", k.what, k.lim.Orders, noun, fmtPeriod(k.lim.Period))
			p.RetryAfter = all.retryAfter(k.lim, n, now)
			return p
		}
	}
	if !take {
		return nil
	}
	for i, k := range keys {
		if p := c.saveRate(k, &owns[i], ownKeys[i], now); p != nil {
			return p
		}
	}
	return nil
}

// saveRate counts one event at now in rec and stores it under key.
func (c *call) saveRate(k rateKey, rec *rateRecord, key string, now time.Time) *acme.Problem {
	rec.count(k.lim, now) // drops what left the window
	rec.add(now, k.lim.Period/rateBuckets)
	rec.Expires = now.Add(k.lim.Period + k.lim.Period/rateBuckets)
	if err := c.s.save(c.ctx, key, rec); err != nil {
		return c.storageFailed(err)
	}
	return nil
}

// record counts one event against each of keys, used up or not (a
// failed validation that ran).
func (c *call) record(keys []rateKey) *acme.Problem {
	now := c.s.now().UTC()
	for _, k := range keys {
		if p := func() *acme.Problem {
			unlock, p := c.lockRate(k)
			if p != nil {
				return p
			}
			defer unlock()
			_, own, ownKey, err := c.loadRate(k)
			if err != nil {
				return c.storageFailed(err)
			}
			return c.saveRate(k, &own, ownKey, now)
		}(); p != nil {
			return p
		}
	}
	return nil
}

// keyRateShards lists the Servers that write sharded rate records (a
// rateShards), so that a count reads each one's record without a List.
const keyRateShards = keyRoot + "rate-shards"

// A rateShards is the list of the Servers writing sharded rate records.
type rateShards struct {
	Shards []rateShard `json:"shards"`
}

// A rateShard is one Server's shard and when it last said it was there.
type rateShard struct {
	ID   string    `json:"id"`
	Seen time.Time `json:"seen"`
}

// Shards not seen for longer than shardForget are dropped from the list
// (their records are long expired and swept); a Server says it is there
// again every shardRefresh.
const (
	shardForget  = 31 * 24 * time.Hour
	shardRefresh = time.Hour
)

// rateShards returns the shards to sum, this Server's among them: read
// from the storage, with this Server's entry added or refreshed when it
// is missing or old (under the storage lock of the list).
func (s *Server) rateShards(ctx context.Context) ([]string, error) {
	var list rateShards
	if err := s.load(ctx, keyRateShards, &list); err != nil && !isNotFound(err) {
		return nil, err
	}
	now := s.now().UTC()
	i := slices.IndexFunc(list.Shards, func(sh rateShard) bool { return sh.ID == s.shard })
	if i < 0 || now.Sub(list.Shards[i].Seen) > shardRefresh {
		unlock, err := s.lock(ctx, "rate-shards")
		if err != nil {
			return nil, err
		}
		defer unlock()
		list = rateShards{}
		if err := s.load(ctx, keyRateShards, &list); err != nil && !isNotFound(err) {
			return nil, err
		}
		list.Shards = slices.DeleteFunc(list.Shards, func(sh rateShard) bool { return sh.ID == s.shard || now.Sub(sh.Seen) > shardForget })
		list.Shards = append(list.Shards, rateShard{ID: s.shard, Seen: now})
		if err := s.save(ctx, keyRateShards, &list); err != nil {
			return nil, err
		}
	}
	out := make([]string, 0, len(list.Shards))
	for _, sh := range list.Shards {
		out = append(out, sh.ID)
	}
	return out, nil
}

// rateMutex returns this Server's mutex of a tenant's rate records.
func (s *Server) rateMutex(key string) *sync.Mutex {
	s.rateMu.Lock()
	defer s.rateMu.Unlock()
	if s.rateLocks == nil {
		s.rateLocks = map[string]*sync.Mutex{}
	}
	mu := s.rateLocks[key]
	if mu == nil {
		mu = new(sync.Mutex)
		s.rateLocks[key] = mu
	}
	return mu
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
