package audit

import (
	"context"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/publicsuffix"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/record"
)

// Limits are a CA's published rate limits that the audit trail can count.
type Limits struct {
	// NewOrders orders per account within NewOrdersWindow.
	NewOrders       int
	NewOrdersWindow time.Duration
	// CertificatesPerDomain certificates per registered domain within
	// CertificatesWindow.
	CertificatesPerDomain int
	CertificatesWindow    time.Duration
}

// LetsEncryptLimits returns Let's Encrypt's published limits: 300 new
// orders per account per 3 hours, 50 certificates per registered domain
// per 7 days.
func LetsEncryptLimits() Limits {
	return Limits{NewOrders: 300, NewOrdersWindow: 3 * time.Hour, CertificatesPerDomain: 50, CertificatesWindow: 7 * 24 * time.Hour}
}

// Kinds of [Usage].
const (
	UsageNewOrders    = "new_orders_per_account"
	UsageCertificates = "certificates_per_domain"
)

// Usage is how much of one rate limit is used, as the audit trail counts it.
type Usage struct {
	// Issuer is the CA's directory URL.
	Issuer string
	// Kind is UsageNewOrders or UsageCertificates; Key the account URL or
	// the registered domain it counts for.
	Kind, Key string
	// Count is what the trail holds within Window; Limit the CA's limit.
	Count, Limit int
	Window       time.Duration
	// Frees is when the oldest counted order or certificate leaves the
	// window, so that Count goes down.
	Frees time.Time
}

// Near reports whether at least nine tenths of the limit are used.
func (u Usage) Near() bool { return u.Limit > 0 && u.Count*10 >= u.Limit*9 }

// RateLimits returns the rate-limit picture a CA would show, from the
// records of every node: new orders per account and certificates per
// registered domain, against limits (by issuer directory URL; an issuer not
// in it gets LetsEncryptLimits), sorted by how close each is to its limit.
// Certificates are counted from the Manager's obtained, renewed and
// replaced decisions; renewals count too, so the figure is an upper bound
// where a CA exempts them.
func (l *Log) RateLimits(ctx context.Context, now time.Time, limits map[string]Limits) ([]Usage, error) {
	limitsOf := func(issuer string) Limits {
		if lim, ok := limits[issuer]; ok {
			return lim
		}
		return LetsEncryptLimits()
	}
	longest := 7 * 24 * time.Hour
	for _, lim := range limits {
		longest = max(longest, lim.NewOrdersWindow, lim.CertificatesWindow)
	}
	recs, err := l.Query(ctx, record.AuditFilter{Since: now.Add(-longest), Until: now.Add(time.Second), Limit: 1 << 30})
	if err != nil {
		return nil, err
	}
	type key struct{ issuer, kind, key string }
	counts := map[key]*Usage{}
	add := func(k key, lim int, window time.Duration, at time.Time) {
		u := counts[k]
		if u == nil {
			u = &Usage{Issuer: k.issuer, Kind: k.kind, Key: k.key, Limit: lim, Window: window}
			counts[k] = u
		}
		u.Count++
		if frees := at.Add(window); u.Frees.IsZero() || frees.Before(u.Frees) {
			u.Frees = frees
		}
	}
	for _, r := range recs {
		lim := limitsOf(r.Issuer)
		switch {
		case r.Kind == record.KindExchange && r.Operation == acme.OpNewOrder && r.Outcome == record.OutcomeOK:
			if now.Sub(r.Time) < lim.NewOrdersWindow {
				add(key{r.Issuer, UsageNewOrders, r.Account}, lim.NewOrders, lim.NewOrdersWindow, r.Time)
			}
		case r.Kind == record.KindDecision && isIssuance(r.Operation) && now.Sub(r.Time) < lim.CertificatesWindow:
			for _, d := range registeredDomains(r.Names) {
				add(key{r.Issuer, UsageCertificates, d}, lim.CertificatesPerDomain, lim.CertificatesWindow, r.Time)
			}
		}
	}
	out := make([]Usage, 0, len(counts))
	for _, u := range counts {
		out = append(out, *u)
	}
	slices.SortFunc(out, func(a, b Usage) int {
		ra, rb := float64(a.Count)/float64(max(a.Limit, 1)), float64(b.Count)/float64(max(b.Limit, 1))
		switch {
		case ra > rb:
			return -1
		case ra < rb:
			return 1
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out, nil
}

func isIssuance(op string) bool {
	switch autotls.EventType(op) {
	case autotls.EventObtained, autotls.EventRenewed, autotls.EventReplaced:
		return true
	}
	return false
}

// registeredDomains returns the distinct registered domains (eTLD+1) of
// names; IP addresses count as themselves.
func registeredDomains(names []string) []string {
	var out []string
	for _, n := range names {
		d, err := publicsuffix.EffectiveTLDPlusOne(strings.TrimPrefix(n, "*."))
		if err != nil {
			d = n
		}
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}
