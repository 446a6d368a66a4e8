package autotls

import (
	"log/slog"
	"time"
)

// EventType says what happened to a certificate.
type EventType string

// Event types.
const (
	// EventObtained: a new certificate was issued (and stored, unless
	// storage failed, which is logged at Error; it is served from memory).
	EventObtained EventType = "obtained"
	// EventRenewed: a certificate was replaced before it expired.
	EventRenewed EventType = "renewed"
	// EventLoaded: a certificate was loaded from storage into the cache.
	EventLoaded EventType = "loaded"
	// EventFailed: obtaining or renewing a certificate failed.
	EventFailed EventType = "failed"
)

// An Event reports a step in a certificate's life to [Manager.OnEvent]. It
// never carries key material or account secrets.
type Event struct {
	Type EventType
	// Name is the name the certificate is managed under.
	Name string
	// Issuer is the ACME directory URL of the CA.
	Issuer string
	// NotAfter is the certificate's expiry (zero for failures).
	NotAfter time.Time
	// Serial is the certificate's serial number in hex (empty for failures).
	Serial string
	// Err is the failure, for EventFailed.
	Err error
	// RetryAt is when the Manager will try again, for EventFailed.
	RetryAt time.Time
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
	if e.Err != nil {
		attrs = append(attrs, slog.String("err", e.Err.Error()))
	}
	if !e.RetryAt.IsZero() {
		attrs = append(attrs, slog.Time("retry_at", e.RetryAt))
	}
	return slog.GroupValue(attrs...)
}
