package relay

import (
	"net/netip"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/audit"
)

// OperationPrefix starts the Operation of every audit record the relay
// writes: "relay.newAccount", "relay.newOrder", "relay.challenge",
// "relay.finalize", "relay.issue", "relay.revoke", …
const OperationPrefix = "relay."

// audit records the decision taken on the call: outcome, and the problem
// when the request was refused or failed.
func (c *call) audit(outcome string, p *acme.Problem) {
	if c.s.AuditLog == nil && c.s.OnDecision == nil {
		return
	}
	r := audit.Record{
		Kind: audit.KindDecision, Outcome: outcome, Operation: OperationPrefix + c.op,
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
	c.s.decide(r)
}

// accepted records that the call's request was accepted.
func (c *call) accepted() { c.audit(audit.OutcomeOK, nil) }

// remoteAddr returns the address part of a RemoteAddr.
func remoteAddr(s string) string {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().String()
	}
	return clip(s, 64)
}

// auditBackground records a decision taken outside a request (the
// upstream issuance of a finalized order).
func (s *Server) auditBackground(r audit.Record) {
	r.Kind = audit.KindDecision
	s.decide(r)
}

// decide hands a decision record to AuditLog and OnDecision.
func (s *Server) decide(r audit.Record) {
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
