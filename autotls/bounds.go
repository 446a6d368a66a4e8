package autotls

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// The Manager's safety bounds on orders, which hold whatever the reason
// for an order (a renewal, the CA's renewal information, a policy, a
// skewed clock, a bug). See the package doc, "Bounds on orders".
const (
	// MaxCertificatesPerName is how many certificates the Manager obtains
	// for one name within NameOrderWindow (or a quarter of the name's
	// certificate lifetime, when that is shorter); past it the name waits
	// until the oldest of them leaves the window.
	MaxCertificatesPerName = 3
	// NameOrderWindow is the period of MaxCertificatesPerName.
	NameOrderWindow = 24 * time.Hour
	// DefaultMaxOrdersPerMinute is how many orders the Manager places
	// with one issuer per minute, with bursts of as many, when
	// [Issuer.MaxOrdersPerMinute] is zero. Past it the issuer is skipped
	// (the next one is tried) and, when every issuer is, the name waits.
	DefaultMaxOrdersPerMinute = 60
)

// ErrOrderLimited is returned (wrapped) when a bound of the Manager's own
// (MaxCertificatesPerName, an issuer's MaxOrdersPerMinute) held an order
// back; the name backs off until the bound allows it again.
var ErrOrderLimited = errors.New("autotls: order held back by the Manager's safety bound")

// nameOrders remembers when certificates were obtained for each name,
// for MaxCertificatesPerName: 32 bytes and the name for each name that
// obtained one within its window (no more than an issuer's orders a day,
// MaxOrdersPerMinute allowing); the rest are pruned as the records
// double.
type nameOrders struct {
	mu    sync.Mutex
	names map[string]nameOrderLog
	sweep int
}

type nameOrderLog struct {
	at     [MaxCertificatesPerName]int64 // Unix nanoseconds, oldest first; zero unused
	window time.Duration
}

// window is the period of MaxCertificatesPerName for a certificate of
// lifetime life.
func orderWindow(life time.Duration) time.Duration {
	if life > 0 && life/4 < NameOrderWindow {
		return life / 4
	}
	return NameOrderWindow
}

// held reports, when name has had MaxCertificatesPerName certificates
// within its window, when the next may be obtained.
func (o *nameOrders) held(name string, now time.Time) (until time.Time, window time.Duration, held bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	l, ok := o.names[name]
	if !ok || l.at[0] == 0 {
		return time.Time{}, 0, false
	}
	until = time.Unix(0, l.at[0]).Add(l.window)
	return until, l.window, now.Before(until)
}

// obtained records a certificate obtained for name at now, of lifetime
// life.
func (o *nameOrders) obtained(name string, now time.Time, life time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.names == nil {
		o.names = make(map[string]nameOrderLog)
	}
	l, ok := o.names[name]
	if !ok && len(o.names) >= max(o.sweep, 1024) {
		o.prune(now)
	}
	copy(l.at[:], l.at[1:])
	l.at[len(l.at)-1] = now.UnixNano()
	l.window = orderWindow(life)
	o.names[name] = l
}

// prune drops the records whose newest certificate left its window.
func (o *nameOrders) prune(now time.Time) {
	for name, l := range o.names {
		if !now.Before(time.Unix(0, l.at[len(l.at)-1]).Add(l.window)) {
			delete(o.names, name)
		}
	}
	o.sweep = 2 * len(o.names)
}

// checkNameBound fails with ErrOrderLimited when name has had
// MaxCertificatesPerName certificates within its window.
func (m *Manager) checkNameBound(name string, now time.Time) error {
	if m.st.unbounded {
		return nil
	}
	if until, window, held := m.st.nameOrders.held(name, now); held {
		return &boundError{until: until, err: fmt.Errorf("%w: %s: %d certificates obtained within %s; not ordering again before %s", ErrOrderLimited, name, MaxCertificatesPerName, window, until.UTC().Format(time.RFC3339))}
	}
	return nil
}

// boundError is an ErrOrderLimited failure with the time the bound lifts,
// which the back-off obeys.
type boundError struct {
	until time.Time
	err   error
}

func (e *boundError) Error() string { return e.err.Error() }
func (e *boundError) Unwrap() error { return e.err }

// boundUntil returns when the bound that held err back lifts.
func boundUntil(err error) (time.Time, bool) {
	var b *boundError
	if errors.As(err, &b) {
		return b.until, true
	}
	return time.Time{}, false
}

// maxOrderWait is the longest an order waits for its issuer's bound of
// orders per minute; past it the issuer is skipped.
const maxOrderWait = time.Minute

// waitOrder takes one of the issuer's orders for the minute, waiting for
// it (at most maxOrderWait, and while ctx allows): orders beyond the
// bound are paced, not refused. It fails with a *boundError when the wait
// would be longer.
func (m *Manager) waitOrder(ctx context.Context, iss *issuer, name string) error {
	if iss.orders == nil {
		return nil
	}
	now := m.now()
	wait := iss.orders.reserve(now)
	if wait <= 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); wait > m.st.maxOrderWait || (ok && time.Until(dl) < wait) {
		iss.orders.unreserve()
		return &boundError{until: now.Add(wait), err: fmt.Errorf("%w: %s: %s's bound of %d orders a minute is reached", ErrOrderLimited, name, iss.url, int(iss.orders.max))}
	}
	if err := m.st.clock.sleep(ctx, wait, true); err != nil {
		iss.orders.unreserve()
		return err
	}
	return nil
}

// reserve takes a token for an order at now, and returns how long the
// order must wait for it (zero: none).
func (l *limiter) reserve(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refill(now)
	l.tokens--
	if l.tokens >= 0 {
		return 0
	}
	return time.Duration(-l.tokens * float64(l.perToken))
}

// unreserve gives back a token reserve took.
func (l *limiter) unreserve() {
	l.mu.Lock()
	l.tokens++
	l.mu.Unlock()
}

// orderLimiter is the bucket of an issuer's MaxOrdersPerMinute; nil means
// no limit.
func orderLimiter(perMinute int) *limiter {
	switch {
	case perMinute < 0:
		return nil
	case perMinute == 0:
		perMinute = DefaultMaxOrdersPerMinute
	}
	return newLimiter(&OnDemand{RateLimit: perMinute, RateInterval: time.Minute})
}

// boundWait is how long the bound that held err back still holds.
func boundWait(err error, now time.Time) time.Duration {
	if until, ok := boundUntil(err); ok {
		return max(until.Sub(now), 0)
	}
	return 0
}
