package relay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"time"

	"github.com/tlsmint/tlsmint/acme"
)

// keyBackoff holds, per upstream, until when it asked not to be sent
// orders (its rateLimited Retry-After), shared by every replica.
const keyBackoff = keyRoot + "upstream-backoff/"

// DefaultRateLimitBackoff is how long an upstream that answered
// rateLimited without a Retry-After is left alone.
const DefaultRateLimitBackoff = time.Minute

// A backoffRecord is an upstream's rate-limit back-off.
type backoffRecord struct {
	Until  time.Time `json:"until"`
	Detail string    `json:"detail,omitempty"`
}

func backoffKey(u *Upstream) string {
	sum := sha256.Sum256([]byte(u.name()))
	return keyBackoff + hex.EncodeToString(sum[:16])
}

// backoff returns until when the upstream asked to be left alone (zero
// when it did not, or that time has passed).
func (s *Server) backoff(ctx context.Context, u *Upstream) (backoffRecord, error) {
	var rec backoffRecord
	if err := s.load(ctx, backoffKey(u), &rec); err != nil {
		if isNotFound(err) {
			return backoffRecord{}, nil
		}
		return backoffRecord{}, err
	}
	if !s.now().Before(rec.Until) {
		return backoffRecord{}, nil
	}
	return rec, nil
}

// noteRateLimit remembers an upstream's rateLimited answer and its
// Retry-After, so that no replica sends it orders before then.
func (s *Server) noteRateLimit(ctx context.Context, u *Upstream, err error) {
	var p *acme.Problem
	if !errors.As(err, &p) || !p.Is(acme.ErrRateLimited) {
		return
	}
	d := p.RetryAfter
	if d <= 0 {
		d = DefaultRateLimitBackoff
	}
	rec := backoffRecord{Until: s.now().Add(d).UTC(), Detail: clip(p.Detail, 512)}
	if err := s.save(ctx, backoffKey(u), rec); err != nil {
		s.logger().Warn("relay: storing an upstream's back-off failed", "upstream", u.name(), "err", err)
	}
}

// rateLimitedUpstream is the problem of an upstream in back-off.
func (s *Server) rateLimitedUpstream(u *Upstream, rec backoffRecord) *acme.Problem {
	p := problem(probRateLimited, http.StatusTooManyRequests, "upstream %s is rate limited until %s", u.name(), rec.Until.Format(time.RFC3339))
	p.RetryAfter = rec.Until.Sub(s.now())
	return p
}

// upstreamsAvailable refuses a new order with rateLimited and the
// earliest Retry-After when every upstream the order would go to (its
// route's, see Server.Routes) is in back-off: the client waits, rather
// than the relay asking a CA that said no.
func (c *call) upstreamsAvailable(tenant string, ids []acme.Identifier) *acme.Problem {
	ups, _ := c.s.routeFor(tenant, ids)
	if len(ups) == 0 {
		return nil
	}
	var first *acme.Problem
	for _, u := range ups {
		rec, err := c.s.backoff(c.ctx, u)
		if err != nil {
			return c.storageFailed(err)
		}
		if rec.Until.IsZero() {
			return nil
		}
		if p := c.s.rateLimitedUpstream(u, rec); first == nil || p.RetryAfter < first.RetryAfter {
			first = p
		}
	}
	first.Detail = "every upstream CA for these names is rate limited: " + first.Detail
	return first
}
