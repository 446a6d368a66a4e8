package acme

import (
	"errors"
	"net/http"
	"time"
)

// Operations an [Exchange] reports, one per kind of request.
const (
	OpDirectory   = "directory"
	OpNewNonce    = "newNonce"
	OpNewAccount  = "newAccount"
	OpAccount     = "account" // account fetch, update, deactivation
	OpKeyChange   = "keyChange"
	OpNewOrder    = "newOrder"
	OpOrder       = "order" // order fetch (polls)
	OpOrders      = "orders"
	OpNewAuthz    = "newAuthz"
	OpAuthz       = "authz" // authorization fetch, polls, deactivation
	OpChallenge   = "challenge"
	OpFinalize    = "finalize"
	OpCertificate = "certificate"
	OpRevoke      = "revoke"
	OpRenewalInfo = "renewalInfo"
)

// An Exchange is one call to the CA as an [Observer] sees it: what was
// asked and what came back, after any transparent retries. It never
// carries request or response bodies, JWS, nonces, keys or EAB secrets.
type Exchange struct {
	// Time is when the call started; Latency how long it took, retries
	// included.
	Time    time.Time
	Latency time.Duration
	// Directory is the client's DirectoryURL, Account its account URL
	// (empty before registration).
	Directory, Account string
	// Operation is one of the Op constants.
	Operation string
	// Identifiers are those the request is about, when the client knows
	// them before the answer (new orders, challenges, finalization).
	Identifiers []Identifier
	// Status is the final HTTP status; zero when no response came.
	Status int
	// ProblemType and ProblemDetail are the CA's problem document, when it
	// sent one (the detail already capped at MaxProblemDetail), and
	// RetryAfter its Retry-After.
	ProblemType, ProblemDetail string
	RetryAfter                 time.Duration
	// Retries counts the repeated attempts (rejected nonces, transient
	// failures) before this outcome.
	Retries int
	// ServerDate is the Date header of the CA's last answer (one-second
	// resolution); zero when it sent none or no answer came. The Manager
	// compares it with its own clock (autotls.ClockSkewTolerance).
	ServerDate time.Time
	// Err is the error the caller got, capped, for failures without a
	// problem document (a refused connection, a timeout); empty on success.
	Err string
}

// An Observer is told of every exchange with the CA, for an audit trail or
// metrics. ObserveExchange is called synchronously after each call, from
// whichever goroutine made it: it must be safe for concurrent use and must
// not block.
type Observer interface {
	ObserveExchange(Exchange)
}

// observe reports a finished call to the client's Observer.
func (c *Client) observe(op string, ids []Identifier, start time.Time, resp *response, retries int, err error) {
	if c.Observer == nil || op == "" {
		return
	}
	ex := Exchange{
		Time:        start,
		Latency:     time.Since(start),
		Directory:   c.DirectoryURL,
		Operation:   op,
		Identifiers: ids,
		Retries:     retries,
	}
	if kid, kerr := c.accountID(); kerr == nil {
		ex.Account = kid
	}
	if resp != nil {
		ex.Status = resp.status
		ex.RetryAfter = resp.retryAfter
		if d, err := http.ParseTime(resp.header.Get("Date")); err == nil {
			ex.ServerDate = d
		}
	}
	if err != nil {
		var p *Problem
		if errors.As(err, &p) {
			ex.Status, ex.ProblemType, ex.ProblemDetail, ex.RetryAfter = p.Status, p.Type, p.Detail, p.RetryAfter
		} else {
			ex.Err = clipString(err.Error(), MaxProblemDetail)
		}
	}
	c.Observer.ObserveExchange(ex)
}
