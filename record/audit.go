package record

import "time"

// Kinds of audit records ([Audit.Kind], [AuditFilter.Kind]).
const (
	KindExchange = "exchange" // one exchange with a CA (acme.Exchange)
	KindDecision = "decision" // something the Manager decided or saw happen
	KindProbe    = "probe"    // what a watchdog found served (package watchdog)
)

// Outcomes of audit records ([Audit.Outcome], [AuditFilter.Outcome]).
const (
	OutcomeOK      = "ok"
	OutcomeFailure = "failure"
	OutcomeRefused = "refused" // a name the host policy refused
)

// An Audit record is one entry of an audit trail: what a Manager's
// AuditLog receives (autotls.Manager.AuditLog), what package audit's Log
// stores and autotls.Manager.Audit returns, and what the ACME relay and
// the watchdog write. It never carries request or response bodies, JWS,
// nonces, keys or EAB secrets.
type Audit struct {
	Time time.Time `json:"time"`
	// Node names the process that wrote it (audit.Log.Node).
	Node string `json:"node"`
	// Kind is KindExchange, KindDecision or KindProbe.
	Kind string `json:"kind"`
	// Outcome is OutcomeOK, OutcomeFailure or OutcomeRefused.
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
	// the event type (autotls.EventFailed, …) of a decision, or "probe".
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

// An AuditFilter selects audit records for autotls.Manager.Audit and
// package audit's Log.Query; zero fields match everything.
type AuditFilter struct {
	// Name matches records about this name (exactly).
	Name string
	// Issuer matches records of this directory URL.
	Issuer string
	// Outcome is OutcomeOK, OutcomeFailure or OutcomeRefused.
	Outcome string
	// Kind is KindExchange, KindDecision or KindProbe.
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
