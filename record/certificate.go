package record

import (
	"log/slog"
	"time"
)

// A Certificate is the state of one managed certificate (or of a managed
// name that has none yet), as autotls.Manager.Certificates and
// relay.Server.Certificates report it. It never carries key material.
type Certificate struct {
	// Name is the name the certificate is managed under.
	Name string
	// Names are the certificate's subject alternative names (DNS names,
	// then IP addresses); empty when there is no certificate.
	Names []string
	// Issuer is the ACME directory URL of the CA.
	Issuer string
	// Serial is the certificate's serial number in hex; empty when there
	// is no certificate.
	Serial string
	// NotBefore and NotAfter bound the certificate's validity.
	NotBefore, NotAfter time.Time
	// RenewAt is when the Manager plans to renew it, and RenewReason why
	// then: autotls.ReasonSchedule, autotls.ReasonARI or
	// autotls.ReasonARIPast.
	RenewAt     time.Time
	RenewReason string
	// RenewBy is the deadline the Manager works to: the end of the window
	// RenewAt was chosen in (autotls.RenewalDeadline), or RenewAt when
	// that is later (a new certificate's floor, the catch-up after a
	// restart); never before RenewAt. A certificate still current after
	// RenewBy was not renewed as planned. Zero when there is no
	// certificate, and for a certificate the Manager does not plan (a
	// relay's).
	RenewBy time.Time
	// ARIWindowStart and ARIWindowEnd are the CA's suggested renewal
	// window (RFC 9773), zero when the CA offers none or it has not been
	// fetched; ARIExplanationURL is the CA's explanation of it, and
	// NextARIPoll when the Manager asks again.
	ARIWindowStart, ARIWindowEnd time.Time
	ARIExplanationURL            string
	NextARIPoll                  time.Time
	// LastError is the last failed attempt to obtain or renew it, at
	// LastErrorAt: this Manager's, or, for a certificate read from
	// storage by the call (not in memory), the failed renewal recorded
	// with it in storage by any Manager sharing the storage, whichever is
	// newer. A renewal that succeeds clears both. BackoffUntil is when
	// this Manager's next attempt may be made (zero when none is pending).
	LastError    string
	LastErrorAt  time.Time
	BackoffUntil time.Time
	// Stored reports whether the certificate is in storage (false while a
	// failed Store is retried); InMemory whether it is cached, and so
	// served without a storage read.
	Stored, InMemory bool
	// Managed reports whether the name was given to Manage.
	Managed bool
	// DNSRecords are the name's dns-persist-01 records that need the
	// operator: with a read-only autotls.Manager.DNSPersist01, the record
	// while it is missing (the certificate is obtained as soon as it
	// appears); and, once its persistUntil is near (see
	// autotls.EventDNSRecordEnding), the record to publish instead
	// (read-only) or the one the provider writes, whose
	// DNSPersist01.PersistUntil should move (with a Provider). Empty when
	// none needs anything.
	DNSRecords []DNS
	// Tenant is the tenant a certificate issued through an ACME relay
	// (relay.Server.Certificates in package relay) belongs to; a Manager
	// leaves it empty.
	Tenant string
	// Revoked reports that the certificate was revoked (a relay records
	// the revocations it passed upstream); a Manager never sets it.
	Revoked bool
}

// A DNS record is one that the operator must publish for a name: with a
// read-only solvers.DNSPersist01, the dns-persist-01 TXT record that
// binds the name to the Manager's account at a CA. It is what
// autotls.EventDNSRecordMissing and autotls.EventDNSRecordEnding carry
// and what [Certificate.DNSRecords] lists.
type DNS struct {
	// Name is where the record must be, fully qualified without the
	// trailing dot, such as "_validation-persist.example.com".
	Name string
	// Type is the record type, "TXT".
	Type string
	// Value is the record's value, unquoted; ZoneFileValue is the same
	// quoted in character-strings of at most 255 octets, as a zone file
	// or DNS console takes it.
	Value, ZoneFileValue string
	// Issuer is the directory URL of the CA the record is for.
	Issuer string
	// Reason is what the authoritative nameservers answer instead, or,
	// for a record that ends soon, when it ends.
	Reason string
	// PersistUntil is, for autotls.EventDNSRecordEnding, when the
	// published record ends: after it the CA refuses it.
	PersistUntil time.Time
}

// String returns the record as a zone file line.
func (r DNS) String() string {
	return r.Name + ". IN " + r.Type + " " + r.ZoneFileValue
}

// LogValue implements [slog.LogValuer].
func (r DNS) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("name", r.Name), slog.String("type", r.Type), slog.String("value", r.Value), slog.String("reason", r.Reason)}
	if !r.PersistUntil.IsZero() {
		attrs = append(attrs, slog.Time("persist_until", r.PersistUntil))
	}
	return slog.GroupValue(attrs...)
}
