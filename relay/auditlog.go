package relay

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/clientnet"
	"github.com/tlsmint/tlsmint/record"
)

// OperationPrefix starts the Operation of every audit record the relay
// writes: "relay.newAccount", "relay.newOrder", "relay.challenge",
// "relay.finalize", "relay.issue", "relay.revoke", …
const OperationPrefix = "relay."

// An AuditLog keeps the relay's decision records ([Server.AuditLog]);
// package audit's Log is one. Add must be safe for concurrent use and must
// not block.
type AuditLog interface {
	Add(record.Audit)
}

// audit records the decision taken on the call: outcome, and the problem
// when the request was refused or failed.
func (c *call) audit(outcome string, p *acme.Problem) {
	if c.s.AuditLog == nil && c.s.OnDecision == nil {
		return
	}
	r := record.Audit{
		Kind: record.KindDecision, Outcome: outcome, Operation: OperationPrefix + c.op,
		Names: c.names, Tenant: c.tenant, Source: remoteAddr(c.r.RemoteAddr),
	}
	if c.acct != nil {
		r.Account = c.url(pathAccount + c.acct.ID)
		if r.Tenant == "" {
			r.Tenant = c.acct.Tenant
		}
	}
	if p != nil {
		r.Problem, r.Detail, r.Status, r.RetryAfter = p.Type, p.Detail, p.Status, p.RetryAfter
	}
	if outcome == record.OutcomeRefused && c.acct == nil && c.tenant == "" {
		// No valid account, no tenant: a scan must not grow the trail.
		// OnDecision (the metrics) sees every one; AuditLog a sample.
		c.s.decideSampled(r)
		return
	}
	c.s.decide(r)
}

// UnauthenticatedSampleInterval is how often a refusal of a request
// that carries no valid account (a bad JWS, an unknown kid, a missing
// or unknown EAB key, …) is kept in the audit trail for one problem
// type and one source network (an IPv4 /24, an IPv6 /48): the first
// refusal, then one per interval, each saying how many like it were
// not kept. OnDecision receives every one.
const UnauthenticatedSampleInterval = time.Minute

// maxSampleKeys bounds the (problem, network) pairs remembered for
// sampling; past it the memory starts again (more records are kept for
// a moment, never more memory).
const maxSampleKeys = 4096

// A sampler decides which unauthenticated refusals reach the audit
// trail.
type sampler struct {
	mu   sync.Mutex
	seen map[string]*sampleState
}

type sampleState struct {
	last       time.Time // when one was last kept
	suppressed int       // refusals since, not kept
}

// decideSampled hands r to OnDecision, and to AuditLog when it is the
// first of its problem and source network in
// UnauthenticatedSampleInterval.
func (s *Server) decideSampled(r record.Audit) {
	if s.OnDecision != nil {
		s.OnDecision(r)
	}
	if s.AuditLog == nil {
		return
	}
	network := clientnet.Of(r.Source)
	key := r.Problem + " " + network
	now := s.now()
	s.sample.mu.Lock()
	if s.sample.seen == nil || len(s.sample.seen) >= maxSampleKeys {
		s.sample.seen = map[string]*sampleState{}
	}
	st := s.sample.seen[key]
	if st != nil && now.Sub(st.last) < UnauthenticatedSampleInterval {
		st.suppressed++
		s.sample.mu.Unlock()
		return
	}
	suppressed := 0
	if st != nil {
		suppressed = st.suppressed
	}
	s.sample.seen[key] = &sampleState{last: now}
	s.sample.mu.Unlock()
	if suppressed > 0 {
		r.Detail = clip(fmt.Sprintf("%s (sampled: %d more refusals like it from %s since the last record were not recorded one by one)", r.Detail, suppressed, network), 1024)
	}
	s.AuditLog.Add(r)
}

// accepted records that the call's request was accepted.
func (c *call) accepted() { c.audit(record.OutcomeOK, nil) }

// remoteAddr returns the address part of a RemoteAddr.
func remoteAddr(s string) string {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().String()
	}
	return clip(s, 64)
}

// auditBackground records a decision taken outside a request (the
// upstream issuance of a finalized order).
func (s *Server) auditBackground(r record.Audit) {
	r.Kind = record.KindDecision
	s.decide(r)
}

// decide hands a decision record to AuditLog and OnDecision.
func (s *Server) decide(r record.Audit) {
	if s.AuditLog != nil {
		s.AuditLog.Add(r)
	}
	if s.OnDecision != nil {
		s.OnDecision(r)
	}
}

// names returns the identifiers' values, wildcards with their "*.".
func names(ids []acme.Identifier) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		out = append(out, id.Value)
	}
	return out
}
