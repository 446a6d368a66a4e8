package autotls

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// An AuditRecord is one entry of a Manager's audit trail (see
// [Manager.AuditLog] and [Manager.Audit]); package audit calls it Record.
// It never carries request or response bodies, JWS, nonces, keys or EAB
// secrets.
type AuditRecord struct {
	Time time.Time `json:"time"`
	// Node names the process that wrote it (audit.Log.Node).
	Node string `json:"node"`
	// Kind is audit.KindExchange, audit.KindDecision or audit.KindProbe.
	Kind string `json:"kind"`
	// Outcome is audit.OutcomeOK, audit.OutcomeFailure or
	// audit.OutcomeRefused.
	Outcome string `json:"outcome"`
	// Tenant and Source say, for a decision of the ACME relay (package
	// relay), which tenant the client belongs to and the address it came
	// from.
	Tenant string `json:"tenant,omitempty"`
	Source string `json:"source,omitempty"`
	// Issuer is the CA's directory URL; Account the account URL.
	Issuer  string `json:"issuer,omitempty"`
	Account string `json:"account,omitempty"`
	// Operation is the ACME operation (acme.OpNewOrder, …) of an exchange,
	// the event type (EventFailed, …) of a decision, or "probe".
	Operation string `json:"operation"`
	// Names are the identifiers or the managed name concerned (for a
	// probe, the server name it asked for).
	Names []string `json:"names,omitempty"`
	// Target is the address ("host:port") a probe dialled.
	Target string `json:"target,omitempty"`
	// Status, Problem and Detail are the CA's answer; RetryAfter its
	// Retry-After; Latency and Retries how the exchange went. For a
	// probe, Problem lists the problems' names (watchdog.ProblemName),
	// comma-separated, and Detail says what they are.
	Status     int           `json:"status,omitempty"`
	Problem    string        `json:"problem,omitempty"`
	Detail     string        `json:"detail,omitempty"`
	RetryAfter time.Duration `json:"retry_after,omitempty"`
	Latency    time.Duration `json:"latency,omitempty"`
	Retries    int           `json:"retries,omitempty"`
	// Serial, NotAfter and Until describe a decision: the certificate,
	// its expiry, and when a back-off or rate limit ends.
	Serial   string    `json:"serial,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"`
	Until    time.Time `json:"until,omitzero"`
}

// An AuditFilter selects audit records for [Manager.Audit] (and package
// audit's Log.Query, which calls it Filter); zero fields match everything.
type AuditFilter struct {
	// Name matches records about this name (exactly).
	Name string
	// Issuer matches records of this directory URL.
	Issuer string
	// Outcome is audit.OutcomeOK, audit.OutcomeFailure or
	// audit.OutcomeRefused.
	Outcome string
	// Kind is audit.KindExchange, audit.KindDecision or audit.KindProbe.
	Kind string
	// Tenant matches the relay's records of this tenant.
	Tenant string
	// Operation matches records of this operation.
	Operation string
	// Since and Until bound the records' time (Until exclusive).
	Since, Until time.Time
	// Limit caps the records returned (the newest); zero means 1000.
	Limit int
}

// An AuditQuerier is an [AuditLog] that can be queried; the Log of package
// audit is one.
type AuditQuerier interface {
	Query(ctx context.Context, f AuditFilter) ([]AuditRecord, error)
}

// ErrNoAuditLog is returned by [Manager.Audit] when the Manager has no
// AuditLog, or one that cannot be queried.
var ErrNoAuditLog = errors.New("autotls: no queryable audit log")

// Audit returns the records of the Manager's audit trail that match f,
// oldest first (the newest f.Limit of them): its exchanges with its CAs,
// its decisions, and those of every node sharing the trail's storage. It
// asks Manager.AuditLog, which must be an [AuditQuerier] (package audit's
// Log is); otherwise it returns ErrNoAuditLog.
func (m *Manager) Audit(ctx context.Context, f AuditFilter) ([]AuditRecord, error) {
	q, ok := m.AuditLog.(AuditQuerier)
	if !ok {
		return nil, fmt.Errorf("%w: set Manager.AuditLog to an audit.Log", ErrNoAuditLog)
	}
	return q.Query(ctx, f)
}
