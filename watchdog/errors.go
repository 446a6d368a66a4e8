package watchdog

import "errors"

// Problems a probe finds. Each problem in [Result.Problems] wraps exactly
// one of them (and, where there is one, the underlying error: the
// [crypto/x509] verification error, the network error), so that
// errors.Is(problem, ErrExpiringSoon) and errors.As(problem,
// &x509.UnknownAuthorityError{}) both work.
var (
	// ErrExpiringSoon: the served leaf is valid but expires within the
	// threshold (see [Watchdog.ExpiryThreshold]).
	ErrExpiringSoon = errors.New("watchdog: certificate expires soon")
	// ErrExpired: the served leaf's NotAfter has passed.
	ErrExpired = errors.New("watchdog: certificate expired")
	// ErrNotYetValid: the served leaf's NotBefore is in the future.
	ErrNotYetValid = errors.New("watchdog: certificate not yet valid")
	// ErrNameMismatch: the served leaf does not cover the target's
	// server name (or IP address).
	ErrNameMismatch = errors.New("watchdog: certificate does not cover the name")
	// ErrUntrusted: the served chain does not verify against the roots
	// (an unknown or self-signed root, a missing or expired intermediate,
	// a leaf not for server authentication).
	ErrUntrusted = errors.New("watchdog: certificate chain does not verify")
	// ErrRevoked: a certificate revocation list the served leaf names
	// (its CRLDistributionPoints), signed by its issuer, lists it (see
	// [Watchdog.Revocation]).
	ErrRevoked = errors.New("watchdog: certificate revoked")
	// ErrNotManagerCertificate: the target is tied to the Manager, and
	// the served leaf is not the certificate the Manager holds for the
	// name (another serial or expiry), or the Manager holds none.
	ErrNotManagerCertificate = errors.New("watchdog: served certificate is not the Manager's")
	// ErrUnreachable: the TCP connection could not be made (refused,
	// no route, a timeout before connecting).
	ErrUnreachable = errors.New("watchdog: endpoint unreachable")
	// ErrHandshake: the connection was made but the TLS handshake failed
	// (an alert such as an unknown name, not TLS, a timeout), or the
	// server sent no certificate.
	ErrHandshake = errors.New("watchdog: TLS handshake failed")
	// ErrInvalidTarget: the target cannot be probed as configured (an
	// address without a port, an invalid server name, Managed without a
	// Manager).
	ErrInvalidTarget = errors.New("watchdog: invalid target")
	// ErrStarted is returned by a second call to Start.
	ErrStarted = errors.New("watchdog: already started")
	// ErrClosed is returned by Probe, Check and Start after Close.
	ErrClosed = errors.New("watchdog: closed")
)

// problemNames are the short names of the problems, in [ProblemName].
var problemNames = []struct {
	err  error
	name string
}{
	{ErrRevoked, "revoked"},
	{ErrExpired, "expired"},
	{ErrExpiringSoon, "expiring_soon"},
	{ErrNotYetValid, "not_yet_valid"},
	{ErrNameMismatch, "name_mismatch"},
	{ErrUntrusted, "untrusted"},
	{ErrNotManagerCertificate, "not_manager_certificate"},
	{ErrUnreachable, "unreachable"},
	{ErrHandshake, "handshake"},
	{ErrInvalidTarget, "invalid_target"},
}

// ProblemName returns the short name of a problem, for metric labels and
// audit records: "revoked", "expired", "expiring_soon", "not_yet_valid",
// "name_mismatch", "untrusted", "not_manager_certificate", "unreachable",
// "handshake" or "invalid_target" for an error wrapping the Err value of
// that name, and "other" for anything else.
func ProblemName(err error) string {
	for _, p := range problemNames {
		if errors.Is(err, p.err) {
			return p.name
		}
	}
	return "other"
}
