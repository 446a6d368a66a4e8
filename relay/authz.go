package relay

import (
	"context"
	"errors"
	"net/http"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/record"
)

// loadAuthz returns a stored authorization, expired when past its expiry.
func (c *call) loadAuthz(id string) (*authzRecord, error) {
	a := new(authzRecord)
	if err := c.s.load(c.ctx, keyAuthzs+id, a); err != nil {
		return nil, err
	}
	if (a.Status == acme.StatusPending || a.Status == acme.StatusValid) && c.s.now().After(a.Expires) {
		a.Status = acme.StatusExpired
	}
	return a, nil
}

// ownAuthz loads an authorization of the signing account.
func (c *call) ownAuthz(id string, acct *accountRecord) (*authzRecord, *acme.Problem) {
	a, err := c.loadAuthz(id)
	if p := c.loadFailed(err, "authorization"); p != nil {
		return nil, p
	}
	if a.Account != acct.ID {
		return nil, unauthorized("the authorization belongs to another account")
	}
	c.names = []string{a.Identifier.Value}
	return a, nil
}

// challengeObject returns the RFC 8555 challenge object.
func (c *call) challengeObject(a *authzRecord, ch *challengeRecord) acme.Challenge {
	return acme.Challenge{
		Type: ch.Type, URL: c.url(pathChallenge + a.ID + "/" + ch.ID), Status: ch.Status,
		Token: ch.Token, Validated: ch.Validated, Error: ch.Error,
	}
}

// authzObject returns the RFC 8555 authorization object. A valid
// authorization lists only its validated challenge.
func (c *call) authzObject(a *authzRecord) acme.Authorization {
	out := acme.Authorization{Status: a.Status, Expires: a.Expires, Identifier: a.Identifier, Wildcard: a.Wildcard, Challenges: []acme.Challenge{}}
	for i := range a.Challenges {
		ch := &a.Challenges[i]
		if a.Status == acme.StatusValid && ch.Status != acme.StatusValid {
			continue
		}
		out.Challenges = append(out.Challenges, c.challengeObject(a, ch))
	}
	return out
}

// authz answers an authorization: POST-as-GET, or deactivation (RFC 8555,
// section 7.5.2).
func (s *Server) authz(c *call, id string) {
	req := c.verified(authKID)
	if req == nil {
		return
	}
	a, p := c.ownAuthz(id, req.account)
	if p != nil {
		c.fail(p)
		return
	}
	if req.postAsGet {
		c.reply(http.StatusOK, c.authzObject(a))
		return
	}
	var body struct {
		Status string `json:"status"`
	}
	if !c.decode(req.payload, &body) {
		return
	}
	if body.Status != acme.StatusDeactivated {
		c.fail(malformed("an authorization's status can only be changed to deactivated"))
		return
	}
	c.op = "deactivateAuthz"
	unlock, err := s.lock(c.ctx, "authz/"+id)
	if err != nil {
		c.fail(c.storageFailed(err))
		return
	}
	defer unlock()
	if a, p = c.ownAuthz(id, req.account); p != nil {
		c.fail(p)
		return
	}
	if a.Status != acme.StatusPending && a.Status != acme.StatusValid {
		c.fail(malformed("the authorization is %s", a.Status))
		return
	}
	a.Status = acme.StatusDeactivated
	if err := s.save(c.ctx, keyAuthzs+id, a); err != nil {
		c.fail(c.storageFailed(err))
		return
	}
	c.accepted()
	c.reply(http.StatusOK, c.authzObject(a))
}

// challenge answers a challenge: POST-as-GET, or a request to validate it
// (RFC 8555, section 7.5.1). The relay validates at once, holding the
// authorization's lock, and answers with the outcome (valid or invalid):
// the client then finds the authorization final on its first poll.
func (s *Server) challenge(c *call, authzID, chalID string) {
	req := c.verified(authKID)
	if req == nil {
		return
	}
	a, p := c.ownAuthz(authzID, req.account)
	if p != nil {
		c.fail(p)
		return
	}
	find := func(a *authzRecord) *challengeRecord {
		for i := range a.Challenges {
			if a.Challenges[i].ID == chalID {
				return &a.Challenges[i]
			}
		}
		return nil
	}
	ch := find(a)
	if ch == nil {
		c.fail(notFound("challenge"))
		return
	}
	c.link(c.url(pathAuthz+a.ID), "up")
	if req.postAsGet {
		c.reply(http.StatusOK, c.challengeObject(a, ch))
		return
	}
	var body map[string]any
	if !c.decode(req.payload, &body) {
		return
	}
	unlock, err := s.lock(c.ctx, "authz/"+authzID)
	if err != nil {
		c.fail(c.storageFailed(err))
		return
	}
	defer unlock()
	if a, p = c.ownAuthz(authzID, req.account); p != nil {
		c.fail(p)
		return
	}
	ch = find(a)
	if a.Status != acme.StatusPending || ch.Status != acme.StatusPending {
		// Validated already (or failed, or expired): the answer is the
		// challenge as it is.
		c.reply(http.StatusOK, c.challengeObject(a, ch))
		return
	}
	keyAuth := ch.Token + "." + req.account.Thumbprint
	pol := c.pol // loaded by verify, with the account
	if pol == nil {
		pol = &Policy{}
	}
	// An account (or tenant) that failed too many validations gets no
	// more until the period has room: the validator is not a scanner.
	// The challenge stays pending.
	failLimits := c.failureLimits(req.account, pol)
	if p := c.limited(failLimits, false); p != nil {
		c.fail(p)
		return
	}
	// The validation runs to its end even if the client goes away, so
	// that its outcome is recorded.
	vctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), s.validator().timeout())
	var verr *acme.Problem
	targets := pol.ValidationTargets
	if err := s.validator().Validate(vctx, ch.Type, a.Identifier, ch.Token, keyAuth, AllowTargets(targets...)); err != nil && !errors.As(err, &verr) {
		verr = internalError("validation failed: %s", clip(err.Error(), 200))
	}
	cancel()
	now := s.now().UTC()
	if verr == nil {
		ch.Status, ch.Validated = acme.StatusValid, now
		a.Status, a.Expires = acme.StatusValid, now.Add(AuthorizationLifetime)
	} else {
		ch.Status, ch.Error = acme.StatusInvalid, verr
		a.Status = acme.StatusInvalid
	}
	if err := s.save(context.WithoutCancel(c.ctx), keyAuthzs+a.ID, a); err != nil {
		c.fail(c.storageFailed(err))
		return
	}
	c.op = "validate." + ch.Type
	if verr != nil {
		c.audit(record.OutcomeFailure, verr)
		c.ctx = context.WithoutCancel(c.ctx) // counted even if the client went away
		if p := c.record(failLimits); p != nil {
			s.logger().Warn("relay: counting a failed validation failed", "problem", p)
		}
	} else {
		c.accepted()
	}
	c.reply(http.StatusOK, c.challengeObject(a, ch))
}
