package statuspage

import (
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/record"
)

// A State is a one-word verdict on a certificate, shown as text and colour.
type State string

// States, from the worst. A state other than ok means the Manager's
// renewal plan did not work out: the page judges by the deadline the
// Manager works to ([record.Certificate].RenewBy), so the two cannot
// disagree.
const (
	// StateRevoked: the certificate was revoked (a relay's certificates,
	// see [CertificateSource]; or one whose serial a watchdog's newest
	// probe record in Handler.Audit found revoked by its CRL).
	StateRevoked State = "revoked"
	// StateExpired: the certificate's NotAfter has passed.
	StateExpired State = "expired"
	// StateFailing: the last attempt to obtain or renew the certificate
	// failed (LastError is set; the Manager clears it on success), whether
	// or not its back-off is still running.
	StateFailing State = "failing"
	// StateExpiring: the certificate is valid but past the deadline by
	// which the Manager renews it: its RenewBy, or, for a certificate
	// without one (a [CertificateSource]'s), [autotls.RenewalDeadline] of
	// its validity and ARI window. A certificate with neither (its
	// lifetime unknown) is not judged expiring.
	StateExpiring State = "expiring"
	// StatePending: a managed name without a certificate and without a
	// failure yet: its first order is queued or running.
	StatePending State = "pending"
	// StateOK: valid, not failing, renewal ahead as planned.
	StateOK State = "ok"
)

// stateOf judges info at now.
func stateOf(info record.Certificate, now time.Time) State {
	if info.NotAfter.IsZero() {
		if info.LastError != "" {
			return StateFailing
		}
		return StatePending
	}
	if info.Revoked {
		return StateRevoked
	}
	if !now.Before(info.NotAfter) {
		return StateExpired
	}
	if info.LastError != "" {
		return StateFailing
	}
	if by := renewByOf(info); !by.IsZero() && now.After(by) {
		return StateExpiring
	}
	return StateOK
}

// renewByOf is the deadline info is judged by: the Manager's, or, for a
// certificate it does not plan, the one it would work to.
func renewByOf(info record.Certificate) time.Time {
	if !info.RenewBy.IsZero() {
		return info.RenewBy
	}
	return autotls.RenewalDeadline(info.NotBefore, info.NotAfter, info.ARIWindowStart, info.ARIWindowEnd)
}

// daysLeft returns the whole days from now until notAfter, rounded down
// (so -1 within the first day after expiry).
func daysLeft(notAfter, now time.Time) int {
	d := notAfter.Sub(now)
	days := int(d / (24 * time.Hour))
	if d < 0 && d%(24*time.Hour) != 0 {
		days--
	}
	return days
}
