package relay

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tlsmint/tlsmint/acme"
)

// orderObject returns the RFC 8555 order object of o (as resolved).
func (c *call) orderObject(o *orderRecord) acme.Order {
	out := acme.Order{
		Status:         o.Status,
		Expires:        o.Expires,
		Identifiers:    o.Identifiers,
		Authorizations: make([]string, 0, len(o.Authzs)),
		Finalize:       c.url(pathOrder + o.ID + "/finalize"),
		Profile:        o.Profile,
		Replaces:       o.Replaces,
		Error:          o.Error,
	}
	for _, a := range o.Authzs {
		out.Authorizations = append(out.Authorizations, c.url(pathAuthz+a))
	}
	if o.Status == acme.StatusValid && o.Cert != "" {
		out.Certificate = c.url(pathCert + o.Cert)
	}
	return out
}

// loadOrder returns a stored order, its status resolved.
func (c *call) loadOrder(id string) (*orderRecord, error) {
	o := new(orderRecord)
	if err := c.s.load(c.ctx, keyOrders+id, o); err != nil {
		return nil, err
	}
	return o, c.resolveOrder(o)
}

// resolveOrder works out the status of an order from its authorizations
// and the clock: a pending order is ready once all its authorizations are
// valid and invalid once one is not; an order past its expiry that has
// no certificate is invalid; a processing one whose issuance no process
// runs (the one that started it stopped or died) is resumed here.
func (c *call) resolveOrder(o *orderRecord) error {
	now := c.s.now()
	switch o.Status {
	case acme.StatusPending:
		if now.After(o.Expires) {
			o.Status = acme.StatusInvalid
			o.Error = malformed("the order expired")
			return nil
		}
		all := true
		for _, id := range o.Authzs {
			a, err := c.loadAuthz(id)
			if err != nil {
				return err
			}
			switch a.Status {
			case acme.StatusValid:
			case acme.StatusPending:
				all = false
			default:
				o.Status = acme.StatusInvalid
				return nil
			}
		}
		if all {
			o.Status = acme.StatusReady
		}
	case acme.StatusProcessing:
		c.s.mu.Lock()
		_, running := c.s.running[o.ID]
		c.s.mu.Unlock()
		// An issuance another replica runs holds the issue lock; the
		// probe is made only for an order that says it was interrupted,
		// or that has been processing longer than a live issuance at
		// another replica usually takes (a process that died).
		if !running && (o.Interrupted != "" || now.Sub(o.Processing) > resumeAfter) && c.s.issueIdle(c.ctx, o.ID) {
			// No process works on it (the relay that started it stopped
			// or died): this one carries it on, from its upstream order
			// when one was placed.
			c.s.startIssue(o, true)
		}
		if o.Interrupted != "" {
			o.Error = problem(probServerInternal, http.StatusServiceUnavailable, "%s; the issuance is resumed (poll the order)", o.Interrupted)
		}
	}
	return nil
}

// issueIdle reports whether no process holds the issue lock of an order,
// waiting for it briefly.
func (s *Server) issueIdle(ctx context.Context, id string) bool {
	lctx, cancel := context.WithTimeout(ctx, issueLockProbe)
	defer cancel()
	unlock, err := s.Storage.Lock(lctx, lockPrefix+"issue/"+id)
	if err != nil {
		return false
	}
	if err := unlock(); err != nil {
		s.logger().Warn("relay: releasing a lock failed", "lock", "issue/"+id, "err", err)
	}
	return true
}

// resumeAfter is how long an order processing at no process of this
// storage that says so is left before a read looks for its issue lock.
const resumeAfter = 30 * time.Second

// issueLockProbe bounds the wait for an order's issue lock when a
// read looks for an interrupted issuance.
const issueLockProbe = 50 * time.Millisecond

// ownOrder loads an order of the signing account.
func (c *call) ownOrder(id string, acct *accountRecord) (*orderRecord, *acme.Problem) {
	o, err := c.loadOrder(id)
	if p := c.loadFailed(err, "order"); p != nil {
		return nil, p
	}
	if o.Account != acct.ID {
		return nil, unauthorized("the order belongs to another account")
	}
	c.names = names(o.Identifiers)
	return o, nil
}

// challengeTypes returns the challenge types offered for an identifier:
// dns-01 only for wildcards, http-01 and tls-alpn-01 for IP addresses
// (RFC 8738), all three for other names.
func challengeTypes(id acme.Identifier, wildcard bool) []string {
	switch {
	case wildcard:
		return []string{acme.ChallengeDNS01}
	case id.Type == acme.IdentifierIP:
		return []string{acme.ChallengeHTTP01, acme.ChallengeTLSALPN01}
	}
	return []string{acme.ChallengeHTTP01, acme.ChallengeDNS01, acme.ChallengeTLSALPN01}
}

// newToken returns a challenge token: 32 random bytes, base64url.
func newToken() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// newOrder places an order (RFC 8555, section 7.4; RFC 9773 replaces).
func (s *Server) newOrder(c *call) {
	req := c.verifyAs(authKID, true, "newOrder needs a payload")
	if req == nil {
		return
	}
	var body struct {
		Identifiers []acme.Identifier `json:"identifiers"`
		NotBefore   string            `json:"notBefore"`
		NotAfter    string            `json:"notAfter"`
		Profile     string            `json:"profile"`
		Replaces    string            `json:"replaces"`
	}
	if !c.decode(req.payload, &body) {
		return
	}
	pol := c.policyOf(req.account)
	if pol == nil {
		return
	}
	if len(body.Identifiers) > pol.maxNames() {
		c.fail(malformed("an order may have at most %d identifiers, not %d", pol.maxNames(), len(body.Identifiers)))
		return
	}
	ids, p := normalizeIdentifiers(body.Identifiers)
	if p != nil {
		c.fail(p)
		return
	}
	c.names = names(ids)
	var subs []acme.Problem
	for _, id := range ids {
		if why := pol.allows(id); why != "" {
			subs = append(subs, *rejected(id, "%s: %s", why, id.Value))
		}
	}
	if p := combine(subs, probRejectedIdentifier, "identifiers refused by policy"); p != nil {
		c.fail(p)
		return
	}
	if body.NotBefore != "" || body.NotAfter != "" {
		c.fail(malformed("notBefore and notAfter are not supported"))
		return
	}
	if body.Profile != "" {
		if _, ok := s.Profiles[body.Profile]; !ok {
			c.fail(problem(probInvalidProfile, http.StatusBadRequest, "profile %q is not offered", clip(body.Profile, 64)))
			return
		}
		if len(pol.Profiles) > 0 && !slices.Contains(pol.Profiles, body.Profile) {
			c.fail(problem(probInvalidProfile, http.StatusBadRequest, "profile %q is not allowed for this account", body.Profile))
			return
		}
	}
	var replaced *certRecord
	if body.Replaces != "" {
		if replaced, p = c.checkReplaces(body.Replaces, req.account, ids); p != nil {
			c.fail(p)
			return
		}
	}
	if p := c.upstreamsAvailable(req.account.Tenant, ids); p != nil {
		c.fail(p)
		return
	}
	if p := c.limited(c.ordersLimits(req.account, pol), true); p != nil {
		c.fail(p)
		return
	}
	now := s.now().UTC()
	o := &orderRecord{
		ID: newID(), Account: req.account.ID, Tenant: req.account.Tenant, Status: acme.StatusPending,
		Created: now, Expires: now.Add(OrderLifetime), Identifiers: ids,
		Profile: body.Profile, Replaces: body.Replaces,
	}
	for _, id := range ids {
		base, wild := id.Value, false
		if id.Type == acme.IdentifierDNS {
			base, wild = strings.CutPrefix(id.Value, "*.")
		}
		a := &authzRecord{
			ID: newID(), Account: req.account.ID, Identifier: acme.Identifier{Type: id.Type, Value: base},
			Wildcard: wild, Status: acme.StatusPending, Expires: o.Expires,
		}
		if pol.preAuthorized(id) {
			a.Status, a.PreAuthorized, a.Expires = acme.StatusValid, true, now.Add(AuthorizationLifetime)
		} else {
			token := newToken()
			for _, t := range challengeTypes(a.Identifier, wild) {
				a.Challenges = append(a.Challenges, challengeRecord{ID: newID(), Type: t, Token: token, Status: acme.StatusPending})
			}
		}
		if err := s.save(c.ctx, keyAuthzs+a.ID, a); err != nil {
			c.fail(c.storageFailed(err))
			return
		}
		o.Authzs = append(o.Authzs, a.ID)
	}
	if err := s.save(c.ctx, keyOrders+o.ID, o); err != nil {
		c.fail(c.storageFailed(err))
		return
	}
	if err := s.scheduleSweep(c.ctx, o); err != nil {
		c.fail(c.storageFailed(err))
		return
	}
	// The index key starts with the creation time, so that a listing is
	// in the order the orders were placed.
	if err := s.Storage.Store(c.ctx, fmt.Sprintf("%s%s/%020d.%s", keyAccountOrders, o.Account, now.UnixNano(), o.ID), []byte{}); err != nil {
		c.fail(c.storageFailed(err))
		return
	}
	if replaced != nil {
		if p := c.markReplaced(replaced.ID, o.ID); p != nil {
			c.fail(p)
			return
		}
	}
	if err := c.resolveOrder(o); err != nil {
		c.fail(c.storageFailed(err))
		return
	}
	c.accepted()
	c.w.Header().Set("Location", c.url(pathOrder+o.ID))
	c.reply(http.StatusCreated, c.orderObject(o))
}

// order answers a POST-as-GET of an order.
func (s *Server) order(c *call, id string) {
	req := c.verifyAs(authKID, false, "an order is read with POST-as-GET")
	if req == nil {
		return
	}
	o, p := c.ownOrder(id, req.account)
	if p != nil {
		c.fail(p)
		return
	}
	if o.Status == acme.StatusProcessing {
		c.w.Header().Set("Retry-After", "1")
	}
	c.w.Header().Set("Location", c.url(pathOrder+id))
	c.reply(http.StatusOK, c.orderObject(o))
}

// finalize checks the CSR of a ready order and starts the upstream
// issuance (RFC 8555, section 7.4). It waits up to FinalizeWait for the
// certificate; the order is then valid, or still processing.
func (s *Server) finalize(c *call, id string) {
	req := c.verifyAs(authKID, true, "finalize needs a payload with the CSR")
	if req == nil {
		return
	}
	var body struct {
		CSR string `json:"csr"`
	}
	if !c.decode(req.payload, &body) {
		return
	}
	pol := c.policyOf(req.account)
	if pol == nil {
		return
	}
	unlock, err := s.lock(c.ctx, "order/"+id)
	if err != nil {
		c.fail(c.storageFailed(err))
		return
	}
	o, p := c.ownOrder(id, req.account)
	if p != nil {
		unlock()
		c.fail(p)
		return
	}
	if o.Status != acme.StatusReady {
		unlock()
		c.fail(problem(probOrderNotReady, http.StatusForbidden, "the order is %s, not ready", o.Status))
		return
	}
	if p := c.stillAllowed(o, pol); p != nil {
		unlock()
		c.fail(p)
		return
	}
	der, p := c.parseCSR(body.CSR, o, pol)
	if p != nil {
		unlock()
		c.fail(p)
		return
	}
	if len(s.Upstreams) == 0 {
		unlock()
		c.fail(internalError("the relay has no upstream CA"))
		return
	}
	o.Status, o.CSR, o.Processing = acme.StatusProcessing, der, s.now().UTC()
	if err := s.save(c.ctx, keyOrders+o.ID, o); err != nil {
		unlock()
		c.fail(c.storageFailed(err))
		return
	}
	done := s.startIssue(o, false)
	unlock()
	c.accepted()
	wait := s.FinalizeWait
	if wait <= 0 {
		wait = DefaultFinalizeWait
	}
	t := time.NewTimer(wait)
	select {
	case <-done:
	case <-t.C:
	case <-c.ctx.Done():
	}
	t.Stop()
	if cur, err := c.loadOrder(id); err == nil {
		o = cur
	}
	if o.Status == acme.StatusProcessing {
		c.w.Header().Set("Retry-After", "1")
	}
	c.w.Header().Set("Location", c.url(pathOrder+id))
	c.reply(http.StatusOK, c.orderObject(o))
}

// stillAllowed checks a ready order against the tenant's policy as it is
// now: the administrator may have narrowed it since the order was placed
// (a name taken away: rejectedIdentifier; a pre-authorization withdrawn
// from an authorization that was never validated: unauthorized).
func (c *call) stillAllowed(o *orderRecord, pol *Policy) *acme.Problem {
	var subs []acme.Problem
	for _, id := range o.Identifiers {
		if why := pol.allows(id); why != "" {
			subs = append(subs, *rejected(id, "%s (the policy changed since the order was placed): %s", why, id.Value))
		}
	}
	if p := combine(subs, probRejectedIdentifier, "identifiers refused by policy"); p != nil {
		return p
	}
	for _, aid := range o.Authzs {
		a, err := c.loadAuthz(aid)
		if err != nil {
			return c.storageFailed(err)
		}
		id := a.Identifier
		if a.Wildcard {
			id.Value = "*." + id.Value
		}
		if a.PreAuthorized && !pol.preAuthorized(id) {
			return unauthorized("%s is no longer pre-authorized for this account: place a new order and validate it", id.Value)
		}
	}
	return nil
}
