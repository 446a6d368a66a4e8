package statuspage

import (
	"time"

	"github.com/tlsmint/tlsmint/autotls"
)

// A State is a one-word verdict on a certificate, shown as text and colour.
type State string

// States, from the worst. The thresholds follow the Manager's own renewal
// plan (see package autotls, "Renewal"), so that a state other than ok
// means the plan did not work out.
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
	// StateExpiring: the certificate is valid but past the point by which
	// the Manager renews it — less than a third of its lifetime left (half,
	// for lifetimes of ten days or less), or, while the CA's ARI window
	// (RFC 9773) still lies ahead, less than a tenth.
	StateExpiring State = "expiring"
	// StatePending: a managed name without a certificate and without a
	// failure yet: its first order is queued or running.
	StatePending State = "pending"
	// StateOK: valid, not failing, renewal ahead as planned.
	StateOK State = "ok"
)

// stateOf judges info at now.
func stateOf(info autotls.CertificateInfo, now time.Time) State {
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
	lifetime := info.NotAfter.Sub(info.NotBefore)
	left := info.NotAfter.Sub(now)
	limit := lifetime / 3
	if lifetime <= 10*24*time.Hour {
		limit = lifetime / 2
	}
	if info.RenewReason == autotls.ReasonARI && info.RenewAt.After(now) {
		limit = lifetime / 10
	}
	if info.NotBefore.IsZero() {
		limit = 7 * 24 * time.Hour // lifetime unknown
	}
	if left < limit {
		return StateExpiring
	}
	return StateOK
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
