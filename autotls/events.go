package autotls

import (
	"log/slog"
	"time"

	"github.com/tlsmint/tlsmint/record"
)

// EventType says what happened to a certificate.
type EventType string

// Event types.
const (
	// EventObtained: a new certificate was issued and stored (see
	// EventNotStored when the Store failed).
	EventObtained EventType = "obtained"
	// EventRenewed: a certificate was renewed at its planned time (the
	// Manager's own window or the CA's ARI window).
	EventRenewed EventType = "renewed"
	// EventLoaded: a certificate was loaded from storage into the cache.
	EventLoaded EventType = "loaded"
	// EventScheduled: a certificate's renewal time changed after the CA's
	// renewal information (ARI) was read; RenewAt and Reason say when and
	// why. Renewal times chosen at issuance are in the obtained, renewed
	// and loaded events.
	EventScheduled EventType = "scheduled"
	// EventFailed: obtaining or renewing a certificate failed; Err says
	// why and RetryAt when the next attempt is made.
	EventFailed EventType = "failed"
	// EventIssuerFailed: one of several issuers failed (Issuer, Err) and
	// the next is tried; EventFailed follows only when every one failed.
	EventIssuerFailed EventType = "issuer_failed"
	// EventRateLimited: the CA asked to wait (rate limit, or a 429/503
	// with Retry-After) until RetryAt; the wait is stored, so other nodes
	// and a restarted Manager obey it too.
	EventRateLimited EventType = "rate_limited"
	// EventNotStored: a certificate was obtained but storing it failed; it
	// is served from memory and its Store retried until it succeeds.
	EventNotStored EventType = "not_stored"
	// EventStored: a certificate whose Store had failed was stored.
	EventStored EventType = "stored"
	// EventReplaced: a certificate was replaced early because the CA's
	// renewal window moved into the past (a revocation, a CA incident).
	EventReplaced EventType = "replaced"
	// EventExpiring: renewing a certificate failed and less than a tenth
	// of its lifetime is left (NotAfter says when it expires; Err is the
	// failure). Emitted at each such failure.
	EventExpiring EventType = "expiring"
	// EventRefused: the host policy (or OnDemand's decision) refused a
	// name a handshake asked for; Err says why. At most
	// MaxRefusedEvents are emitted a minute, so that a flood of random
	// server names cannot flood OnEvent, the logs or the audit trail.
	EventRefused EventType = "refused"
	// EventDNSRecordMissing: with a read-only Manager.DNSPersist01, the
	// name's dns-persist-01 record is missing or does not do; DNSRecord is
	// the exact record to create (and why what is published does not do)
	// and Err the solver's *solvers.PersistRecordError. Emitted when a
	// name's needed record is first seen missing or changes, not at
	// every retry; the certificate is obtained as soon as the record
	// appears.
	EventDNSRecordMissing EventType = "dns_record_missing"
	// EventDNSRecordFound: a dns-persist-01 record that a name waited for
	// (DNSRecord) is published; the certificate is obtained next.
	EventDNSRecordFound EventType = "dns_record_found"
	// EventDNSRecordEnding: a name's dns-persist-01 record ends within
	// the solver's PersistUntilWarning (DNSRecord.PersistUntil says when);
	// after that the CA refuses it. Read-only: the published record's
	// persistUntil, and DNSRecord is the record to publish instead; with a
	// Provider: DNSPersist01.PersistUntil, which should be moved later.
	// Emitted once per name and persistUntil.
	EventDNSRecordEnding EventType = "dns_record_ending"
	// EventNotRenewed: a background order for a name — its renewal, a
	// retry, the replacement of a revoked or expired certificate — was
	// not placed because the name is no longer allowed: it was not given
	// to Manage, and the host policy or OnDemand's decision (asked with
	// a nil client address) refuses it now, or it is an IP address and
	// AllowIPCertificates is off; Err says why. The certificate is
	// served until it expires, and the policy is asked again meanwhile
	// (after an eighth of the time left, at least an hour, and at
	// expiry; a name it allows again is renewed then); once the
	// certificate has expired the name is forgotten, and its stored
	// certificate stays for a handshake the policy allows again.
	EventNotRenewed EventType = "not_renewed"
	// EventClockSkew: the local clock was found off from a CA's by more
	// than ClockSkewTolerance (Skew is the correction the Manager now
	// applies: how far the local clock is ahead), or back within it
	// (Skew is zero). Emitted when the correction changes, not at every
	// answer.
	EventClockSkew EventType = "clock_skew"
	// EventExpired: a certificate expired without a successful renewal;
	// Err is the last failure. Whether it is still served is
	// Manager.ServeExpired's choice.
	EventExpired EventType = "expired"
)

// An Event reports a step in a certificate's life to [Manager.OnEvent]. It
// never carries key material or account secrets.
type Event struct {
	Type EventType
	// Name is the name the certificate is managed under, which is also
	// the certificate's one subject alternative name.
	Name string
	// Issuer is the ACME directory URL of the CA.
	Issuer string
	// NotAfter is the certificate's expiry, and Serial its serial number
	// in hex; for a failed renewal, those of the certificate still served
	// (zero and empty when there is none).
	NotAfter time.Time
	Serial   string
	// RenewAt is when the certificate is planned to be renewed, and Reason
	// why then (ReasonSchedule, ReasonARI, ReasonARIPast); for obtained,
	// renewed, replaced, loaded and scheduled events.
	RenewAt time.Time
	Reason  string
	// Err is the failure, for EventFailed, EventIssuerFailed,
	// EventRateLimited, EventNotStored, EventExpiring, EventExpired and
	// EventDNSRecordMissing, and why the name was refused, for
	// EventRefused and EventNotRenewed. With several
	// issuers, EventFailed's Err joins an [*IssuerError] per issuer tried.
	Err error
	// RetryAt is when the Manager will try again, for EventFailed,
	// EventRateLimited and EventExpiring.
	RetryAt time.Time
	// Skew is how far the local clock is ahead of the CA's (negative:
	// behind), for EventClockSkew.
	Skew time.Duration
	// DNSRecord is the DNS record the operator must publish, for
	// EventDNSRecordMissing, EventDNSRecordFound and EventDNSRecordEnding;
	// nil otherwise.
	DNSRecord *record.DNS
}

// LogValue implements [slog.LogValuer].
func (e Event) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("type", string(e.Type)), slog.String("name", e.Name)}
	if e.Issuer != "" {
		attrs = append(attrs, slog.String("issuer", e.Issuer))
	}
	if !e.NotAfter.IsZero() {
		attrs = append(attrs, slog.Time("not_after", e.NotAfter))
	}
	if e.Serial != "" {
		attrs = append(attrs, slog.String("serial", e.Serial))
	}
	if !e.RenewAt.IsZero() {
		attrs = append(attrs, slog.Time("renew_at", e.RenewAt), slog.String("reason", e.Reason))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("err", e.Err.Error()))
	}
	if !e.RetryAt.IsZero() {
		attrs = append(attrs, slog.Time("retry_at", e.RetryAt))
	}
	if e.Type == EventClockSkew {
		attrs = append(attrs, slog.Duration("skew", e.Skew))
	}
	if e.DNSRecord != nil {
		attrs = append(attrs, slog.Any("dns_record", e.DNSRecord.LogValue()))
	}
	return slog.GroupValue(attrs...)
}
