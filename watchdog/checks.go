package watchdog

import (
	"crypto/x509"
	"fmt"
	"time"

	"github.com/tlsmint/tlsmint/internal/durfmt"
	"github.com/tlsmint/tlsmint/record"
)

// Defaults for the zero values of [Watchdog]'s fields.
const (
	// DefaultExpiryThreshold is the absolute expiry threshold.
	DefaultExpiryThreshold = 7 * 24 * time.Hour
	// DefaultExpiryFraction is the share of a certificate's lifetime
	// that, when less of it is left, counts as expiring soon (whichever
	// of it and the absolute threshold is shorter applies). A quarter
	// keeps 6-day certificates, renewed with half their life left, from
	// alarming all the time, and 90-day ones at the absolute 7 days.
	DefaultExpiryFraction = 0.25
)

// inspect checks a served chain at now: the leaf's validity and expiry,
// the name, and the chain against roots (nil: the system roots).
func (w *Watchdog) inspect(chain []*x509.Certificate, name string, roots *x509.CertPool, now time.Time) []error {
	leaf := chain[0]
	var problems []error
	switch {
	case now.After(leaf.NotAfter):
		problems = append(problems, fmt.Errorf("%w: %s ago (at %s)", ErrExpired,
			durfmt.Format(now.Sub(leaf.NotAfter)), leaf.NotAfter.UTC().Format(time.RFC3339)))
	case now.Before(leaf.NotBefore):
		problems = append(problems, fmt.Errorf("%w: valid from %s", ErrNotYetValid, leaf.NotBefore.UTC().Format(time.RFC3339)))
	default:
		left := leaf.NotAfter.Sub(now)
		if th, ok := w.threshold(leaf); ok && left < th {
			problems = append(problems, fmt.Errorf("%w: in %s (at %s; threshold %s)", ErrExpiringSoon,
				durfmt.Format(left), leaf.NotAfter.UTC().Format(time.RFC3339), durfmt.Format(th)))
		}
	}
	if name != "" {
		if err := leaf.VerifyHostname(name); err != nil {
			problems = append(problems, fmt.Errorf("%w: %w", ErrNameMismatch, err))
		}
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	// The chain is verified at a time inside the leaf's validity, so that
	// an expired leaf is reported once, as ErrExpired, and an expired
	// intermediate still as ErrUntrusted.
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   clamp(now, leaf.NotBefore, leaf.NotAfter),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		problems = append(problems, fmt.Errorf("%w: %w", ErrUntrusted, err))
	}
	return problems
}

// threshold returns the expiry threshold for leaf; ok is false when the
// check is off.
func (w *Watchdog) threshold(leaf *x509.Certificate) (th time.Duration, ok bool) {
	th = w.ExpiryThreshold
	switch {
	case th < 0:
		return 0, false
	case th == 0:
		th = DefaultExpiryThreshold
	}
	frac := w.ExpiryFraction
	if frac == 0 {
		frac = DefaultExpiryFraction
	}
	if frac > 0 {
		if f := time.Duration(frac * float64(leaf.NotAfter.Sub(leaf.NotBefore))); f < th {
			th = f
		}
	}
	return th, true
}

// compareHeld checks that leaf is the certificate the Manager holds for
// name (info, nil when it holds none): same serial and same expiry.
func compareHeld(leaf *x509.Certificate, info *record.Certificate, name string) error {
	if info == nil {
		return fmt.Errorf("%w: the Manager holds no certificate for %q; served serial %s", ErrNotManagerCertificate, name, serialHex(leaf))
	}
	if s := serialHex(leaf); s != info.Serial || !leaf.NotAfter.Truncate(time.Second).Equal(info.NotAfter.Truncate(time.Second)) {
		return fmt.Errorf("%w: served serial %s (expires %s), the Manager holds serial %s (expires %s) under %q",
			ErrNotManagerCertificate, s, leaf.NotAfter.UTC().Format(time.RFC3339),
			info.Serial, info.NotAfter.UTC().Format(time.RFC3339), info.Name)
	}
	return nil
}

func clamp(t, lo, hi time.Time) time.Time {
	if t.Before(lo) {
		return lo
	}
	if t.After(hi) {
		return hi
	}
	return t
}
