package relay

import (
	"net/http"
	"time"

	"github.com/tlsmint/tlsmint/acme"
)

// anonymousKey names the anonymous accounts' tenant in storage keys ('@'
// is not allowed in tenant IDs).
const anonymousKey = "@anonymous"

// A rateRecord holds the times of a tenant's recent new orders.
type rateRecord struct {
	Orders []time.Time `json:"orders"`
}

// takeOrder counts a new order against the tenant's rate limit, or
// refuses it with rateLimited and the time until one is allowed. The
// count is shared by every replica on the storage.
func (c *call) takeOrder(tenant string, pol *Policy) *acme.Problem {
	rl := pol.RateLimit
	if rl.Orders <= 0 || rl.Period <= 0 {
		return nil
	}
	k := tenant
	if k == "" {
		k = anonymousKey
	}
	unlock, err := c.s.lock(c.ctx, "rate/"+k)
	if err != nil {
		return c.storageFailed(err)
	}
	defer unlock()
	var rec rateRecord
	if err := c.s.load(c.ctx, keyRates+k, &rec); err != nil && !isNotFound(err) {
		return c.storageFailed(err)
	}
	now := c.s.now().UTC()
	cut := now.Add(-rl.Period)
	kept := rec.Orders[:0]
	for _, t := range rec.Orders {
		if t.After(cut) {
			kept = append(kept, t)
		}
	}
	rec.Orders = kept
	if len(rec.Orders) >= rl.Orders {
		p := problem(probRateLimited, http.StatusTooManyRequests, "this account's tenant may place %d orders per %s", rl.Orders, rl.Period)
		p.RetryAfter = rec.Orders[len(rec.Orders)-rl.Orders].Add(rl.Period).Sub(now)
		return p
	}
	rec.Orders = append(rec.Orders, now)
	if err := c.s.save(c.ctx, keyRates+k, &rec); err != nil {
		return c.storageFailed(err)
	}
	return nil
}
