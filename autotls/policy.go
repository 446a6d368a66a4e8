package autotls

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrHostNotAllowed is returned (wrapped) when the host policy refuses a
// name. A refused name costs no CA request, no storage access and no lock.
var ErrHostNotAllowed = errors.New("autotls: host not allowed")

// MaxRefusedEvents is how many EventRefused a Manager emits a minute at
// most (in bursts of as many); further refusals are not reported.
const MaxRefusedEvents = 60

// Refusals counts the handshakes a Manager refused a certificate to, by
// reason, since it was created (see [Manager.Refusals]). Every refusal is
// counted, including those past MaxRefusedEvents that no event reports.
type Refusals struct {
	// NoServerName: the client sent no server name and DefaultServerName
	// is not set.
	NoServerName uint64
	// InvalidName: the server name is not a valid host name
	// ([ErrInvalidName]): a wildcard, an empty or too long label, a
	// character no host name has, a single label.
	InvalidName uint64
	// NotAllowed: the host policy, OnDemand.Decide or AllowIPCertificates
	// refused the name ([ErrHostNotAllowed]).
	NotAllowed uint64
	// OnDemandLimited: an on-demand order was refused by OnDemand's rate
	// limit or its cap on orders in flight ([ErrOnDemandLimited]).
	OnDemandLimited uint64
}

// refusalCounts are a Manager's Refusals, counted atomically.
type refusalCounts struct {
	noServerName, invalidName, notAllowed, onDemandLimited atomic.Uint64
}

// count counts a refusal by its error.
func (c *refusalCounts) count(err error) {
	switch {
	case errors.Is(err, ErrOnDemandLimited):
		c.onDemandLimited.Add(1)
	case errors.Is(err, ErrHostNotAllowed):
		c.notAllowed.Add(1)
	default:
		c.invalidName.Add(1)
	}
}

// Refusals returns how many handshakes the Manager refused a certificate
// to since it was created, by reason. It is cheap (four atomic loads) and
// safe for concurrent use: metrics read it at each scrape.
func (m *Manager) Refusals() Refusals {
	c := &m.state().refusalCounts
	return Refusals{
		NoServerName:    c.noServerName.Load(),
		InvalidName:     c.invalidName.Load(),
		NotAllowed:      c.notAllowed.Load(),
		OnDemandLimited: c.onDemandLimited.Load(),
	}
}

// refused counts a refused name and reports it, within MaxRefusedEvents a
// minute.
func (m *Manager) refused(name string, err error) {
	m.st.refusalCounts.count(err)
	if !m.st.refusals.allow(m.now()) {
		return
	}
	m.emit(Event{Type: EventRefused, Name: clip(name), Err: err})
}

// ErrOnDemandLimited is returned (wrapped) when an on-demand order is refused
// because the rate limit or the cap on orders in flight is reached.
var ErrOnDemandLimited = errors.New("autotls: on-demand issuance limit reached")

// A HostPolicy decides whether a certificate may be obtained for host, a
// normalised name (see [NormalizeName]) or IP address. It returns nil to
// allow, an error to refuse. It must be safe for concurrent use and should
// be fast: it runs in the TLS handshake.
type HostPolicy func(ctx context.Context, host string) error

// NewHostWhitelist returns a policy that allows exactly the given names
// and, for an entry "*.example.com", any name one label below example.com
// (not example.com itself, and not a.b.example.com). Name entries are
// normalised as by [NormalizeName], so "Bücher.Example." matches the SNI
// "xn--bcher-kva.example". IP address entries ("192.0.2.1", "2001:db8::1",
// "[2001:db8::1]") are matched in canonical form (lower case, shortest
// IPv6 form, IPv4-mapped addresses as IPv4) and only matter when
// [Manager.AllowIPCertificates] is set; otherwise IP names are refused
// before the policy is asked.
//
// It reports every invalid entry (empty, malformed, a wildcard anywhere
// but in the first label, a wildcard of an IP address), each error naming
// its entry and wrapping [ErrInvalidName], joined with [errors.Join]; the
// policy is nil then.
func NewHostWhitelist(names ...string) (HostPolicy, error) {
	exact := make(map[string]bool, len(names))
	wild := make(map[string]bool)
	var errs []error
	for _, n := range names {
		if base, ok := strings.CutPrefix(n, "*."); ok {
			b, err := NormalizeName(base)
			if err != nil {
				errs = append(errs, fmt.Errorf("autotls: host whitelist entry %q: %w", clip(n), err))
				continue
			}
			wild[b] = true
			continue
		}
		if a, ok := parseIPName(n); ok {
			exact[a.String()] = true
			continue
		}
		h, err := NormalizeName(n)
		if err != nil {
			errs = append(errs, fmt.Errorf("autotls: host whitelist entry %q: %w", clip(n), err))
			continue
		}
		exact[h] = true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return func(_ context.Context, host string) error {
		if exact[host] {
			return nil
		}
		if i := strings.IndexByte(host, '.'); i > 0 && wild[host[i+1:]] {
			return nil
		}
		return fmt.Errorf("%w: %q is not in the whitelist", ErrHostNotAllowed, host)
	}, nil
}

// HostWhitelist is like [NewHostWhitelist] but panics if an entry is
// invalid, as [regexp.MustCompile] does. It is for names fixed in the
// program; use NewHostWhitelist for names from configuration, flags or
// users.
func HostWhitelist(names ...string) HostPolicy {
	p, err := NewHostWhitelist(names...)
	if err != nil {
		panic(err)
	}
	return p
}

// OnDemand configures issuance for names that the host policy does not
// know in advance: a decision function, a rate limit on new orders and a cap
// on orders in flight. Without it, only names the host policy allows (and
// names given to [Manager.Manage]) are ever ordered.
type OnDemand struct {
	// Decide is asked about every name the host policy refuses; it sees the
	// normalised name and the client's address (nil when unknown, and
	// when asked before a background renewal: a name it refuses then is
	// not renewed, see EventNotRenewed). Nil means refuse everything.
	Decide func(ctx context.Context, name string, client net.Addr) error

	// RateLimit is the number of new on-demand orders allowed per
	// RateInterval, with bursts up to RateLimit. Zero means 10.
	RateLimit int
	// RateInterval is the period of RateLimit. Zero means one minute.
	RateInterval time.Duration
	// MaxInFlight caps the on-demand issuances running at once; handshakes
	// beyond it fail at once. Zero means 8.
	MaxInFlight int
}

// limiter is a token bucket plus an in-flight counter.
type limiter struct {
	mu       sync.Mutex
	tokens   float64
	max      float64
	perToken time.Duration
	last     time.Time
	inflight int
	maxIn    int
}

func newLimiter(o *OnDemand) *limiter {
	rate, every, in := o.RateLimit, o.RateInterval, o.MaxInFlight
	if rate <= 0 {
		rate = 10
	}
	if every <= 0 {
		every = time.Minute
	}
	if in <= 0 {
		in = 8
	}
	return &limiter{tokens: float64(rate), max: float64(rate), perToken: every / time.Duration(rate), maxIn: in}
}

// enter reserves an in-flight slot; the returned func releases it.
func (l *limiter) enter() (func(), bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inflight >= l.maxIn {
		return nil, false
	}
	l.inflight++
	return func() {
		l.mu.Lock()
		l.inflight--
		l.mu.Unlock()
	}, true
}

// allow takes one token for a new order.
func (l *limiter) allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refill(now)
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}

// refill adds the tokens earned since the last call; l.mu is held.
func (l *limiter) refill(now time.Time) {
	if !l.last.IsZero() && l.perToken > 0 && now.After(l.last) {
		l.tokens += float64(now.Sub(l.last)) / float64(l.perToken)
		if l.tokens > l.max {
			l.tokens = l.max
		}
	}
	if now.After(l.last) {
		l.last = now
	}
}
