package relay

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tlsmint/tlsmint/acme"
)

// loadCert returns a stored certificate record.
func (c *call) loadCert(id string) (*certRecord, error) {
	r := new(certRecord)
	if err := c.s.load(c.ctx, keyCerts+id, r); err != nil {
		return nil, err
	}
	return r, nil
}

// certByARIID returns the certificate with the given ARI certificate ID
// (errNotFound when the relay did not issue it).
func (c *call) certByARIID(ari string) (*certRecord, error) {
	if !validARIID(ari) {
		return nil, errNotFound
	}
	id, err := c.s.Storage.Load(c.ctx, keyARI+ari)
	if err != nil {
		return nil, err
	}
	return c.loadCert(string(id))
}

// validARIID reports whether s has the shape of an RFC 9773 certificate
// ID: two base64url parts joined by a dot.
func validARIID(s string) bool {
	a, b, ok := strings.Cut(s, ".")
	if !ok || a == "" || b == "" || len(s) > 256 {
		return false
	}
	for _, part := range []string{a, b} {
		if _, err := base64.RawURLEncoding.DecodeString(part); err != nil {
			return false
		}
	}
	return true
}

// leaf returns the certificate's end-entity certificate.
func (r *certRecord) leaf() (*x509.Certificate, error) {
	if len(r.Chains) == 0 {
		return nil, errors.New("relay: stored certificate has no chain")
	}
	b, _ := pem.Decode(r.Chains[0])
	if b == nil {
		return nil, errors.New("relay: stored chain is not PEM")
	}
	return x509.ParseCertificate(b.Bytes)
}

// upstream returns the Upstream called name, or nil.
func (s *Server) upstream(name string) *Upstream {
	for _, u := range s.Upstreams {
		if u.name() == name {
			return u
		}
	}
	return nil
}

// certificate serves a certificate chain (RFC 8555, section 7.4.2): the
// upstream's default chain at /cert/<id>, its alternates at
// /cert/<id>/<n>, each response linking the others as rel="alternate".
func (s *Server) certificate(c *call, id string, n int) {
	req := c.verifyAs(authKID, false, "a certificate is downloaded with POST-as-GET")
	if req == nil {
		return
	}
	r, err := c.loadCert(id)
	if p := c.loadFailed(err, "certificate"); p != nil {
		c.fail(p)
		return
	}
	if r.Account != req.account.ID {
		c.fail(unauthorized("the certificate belongs to another account"))
		return
	}
	if n >= len(r.Chains) {
		c.fail(notFound("certificate chain"))
		return
	}
	for i := range r.Chains {
		if i == n {
			continue
		}
		u := c.url(pathCert + id)
		if i > 0 {
			u += "/" + strconv.Itoa(i)
		}
		c.link(u, "alternate")
	}
	c.w.Header().Set("Content-Type", "application/pem-certificate-chain")
	c.w.Header().Set("Content-Length", strconv.Itoa(len(r.Chains[n])))
	c.w.WriteHeader(http.StatusOK)
	c.w.Write(r.Chains[n])
}

// revocationReasons are the reasons accepted (RFC 5280; Boulder's set).
var revocationReasons = []int{acme.ReasonUnspecified, acme.ReasonKeyCompromise, acme.ReasonAffiliationChanged, acme.ReasonSuperseded, acme.ReasonCessationOfOperation}

// revoke revokes a certificate the relay issued (RFC 8555, section 7.6),
// signed by the account that ordered it or by the certificate's key, and
// revokes it upstream.
func (s *Server) revoke(c *call) {
	req := c.verifyAs(authEither, true, "revokeCert needs a payload")
	if req == nil {
		return
	}
	var body struct {
		Certificate string `json:"certificate"`
		Reason      *int   `json:"reason"`
	}
	if !c.decode(req.payload, &body) {
		return
	}
	der, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(body.Certificate, "="))
	if err != nil || len(der) == 0 {
		c.fail(malformed("the certificate is not base64url DER"))
		return
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		c.fail(malformed("the certificate does not parse"))
		return
	}
	reason := 0
	if body.Reason != nil {
		reason = *body.Reason
	}
	if !slices.Contains(revocationReasons, reason) {
		c.fail(problem(probBadRevocationReason, http.StatusBadRequest, "revocation reason %d is not accepted (0, 1, 3, 4, 5)", reason))
		return
	}
	ari, err := acme.CertificateID(leaf)
	if err != nil {
		c.fail(notFound("certificate"))
		return
	}
	r, err := c.certByARIID(ari)
	if p := c.loadFailed(err, "certificate issued by this relay"); p != nil {
		c.fail(p)
		return
	}
	if stored, err := r.leaf(); err != nil || !slices.Equal(stored.Raw, leaf.Raw) {
		c.fail(notFound("certificate issued by this relay"))
		return
	}
	c.names = names(r.Identifiers)
	c.tenant = r.Tenant
	if req.account != nil {
		if req.account.ID != r.Account {
			c.fail(unauthorized("the account did not order this certificate"))
			return
		}
	} else {
		got, p1 := thumbprint(req.key)
		want, err := acme.Thumbprint(leaf.PublicKey)
		if p1 != nil || err != nil || got != want {
			c.fail(unauthorized("the request is signed neither by the certificate's account nor by its key"))
			return
		}
	}
	unlock, err := s.lock(c.ctx, "cert/"+r.ID)
	if err != nil {
		c.fail(c.storageFailed(err))
		return
	}
	defer unlock()
	if r, err = c.loadCert(r.ID); err != nil {
		c.fail(c.storageFailed(err))
		return
	}
	if r.Revoked {
		c.fail(problem(probAlreadyRevoked, http.StatusBadRequest, "the certificate is already revoked"))
		return
	}
	up := s.upstream(r.Upstream)
	if up == nil {
		c.fail(internalError("the upstream %q that issued the certificate is not configured", r.Upstream))
		return
	}
	err = up.ensureAccount(c.ctx)
	if err == nil {
		err = up.Client.RevokeCertificate(c.ctx, der, nil, reason)
	}
	if err != nil && !errors.Is(err, acme.ErrAlreadyRevoked) {
		s.logger().Warn("relay: upstream revocation failed", "cert", r.ID, "upstream", up.name(), "err", err)
		c.fail(downstreamProblem(&upstreamError{name: up.name(), err: err}))
		return
	}
	r.Revoked, r.RevokedAt, r.Reason = true, s.now().UTC(), reason
	if err := s.save(context.WithoutCancel(c.ctx), keyCerts+r.ID, r); err != nil {
		c.fail(c.storageFailed(err))
		return
	}
	// The index shows the revocation when r is its tenant's current
	// certificate for these names.
	if err := s.noteCurrent(context.WithoutCancel(c.ctx), r); err != nil {
		c.fail(c.storageFailed(err))
		return
	}
	c.accepted()
	c.w.Header().Set("Content-Length", "0")
	c.w.WriteHeader(http.StatusOK)
}

// Renewal information when the upstream has none to give.
const defaultARIRetry = 6 * time.Hour

// renewalInfo serves RFC 9773 renewal information for a certificate the
// relay issued: the upstream's, passed through with its Retry-After; a
// window in the past for a certificate revoked through the relay; and,
// when the upstream offers none or fails, the window of the last third
// of the lifetime.
func (s *Server) renewalInfo(c *call, id string) {
	c.link(c.url(pathDirectory), "index")
	r, err := c.certByARIID(id)
	if p := c.loadFailed(err, "certificate"); p != nil {
		c.fail(p)
		return
	}
	c.names, c.tenant = names(r.Identifiers), r.Tenant
	now := s.now()
	var ri acme.RenewalInfo
	retry := defaultARIRetry
	switch {
	case r.Revoked:
		ri.SuggestedWindow.Start, ri.SuggestedWindow.End = now.Add(-2*time.Hour), now.Add(-time.Hour)
	default:
		got, err := s.upstreamRenewalInfo(c.ctx, r)
		if err == nil {
			ri = *got
			s.noteARIWindow(c.ctx, r.ID, got)
			if got.RetryAfter > 0 {
				retry = got.RetryAfter
			}
			break
		}
		if !errors.Is(err, acme.ErrNoRenewalInfo) {
			s.logger().Debug("relay: upstream renewal information failed", "cert", r.ID, "err", err)
			retry = time.Hour
		}
		life := r.NotAfter.Sub(r.NotBefore)
		ri.SuggestedWindow.Start, ri.SuggestedWindow.End = r.NotAfter.Add(-life/3), r.NotAfter.Add(-life/6)
	}
	c.w.Header().Set("Retry-After", retryAfterSeconds(retry))
	c.reply(http.StatusOK, ri)
}

func (s *Server) upstreamRenewalInfo(ctx context.Context, r *certRecord) (*acme.RenewalInfo, error) {
	up := s.upstream(r.Upstream)
	if up == nil {
		return nil, acme.ErrNoRenewalInfo
	}
	leaf, err := r.leaf()
	if err != nil {
		return nil, err
	}
	return up.Client.RenewalInfo(ctx, leaf)
}

// checkReplaces checks a newOrder's "replaces" (RFC 9773, section 5): a
// certificate of this account, sharing a name with the order, not
// replaced already by an order that is not invalid.
func (c *call) checkReplaces(ari string, acct *accountRecord, ids []acme.Identifier) (*certRecord, *acme.Problem) {
	r, err := c.certByARIID(ari)
	if isNotFound(err) {
		return nil, malformed("replaces: no certificate %q was issued by this relay", clip(ari, 256))
	}
	if err != nil {
		return nil, c.storageFailed(err)
	}
	if r.Account != acct.ID {
		return nil, unauthorized("replaces: the requester account did not request the certificate being replaced")
	}
	shared := false
	for _, id := range ids {
		if slices.Contains(r.Identifiers, id) {
			shared = true
		}
	}
	if !shared {
		return nil, malformed("replaces: the order shares no identifier with the certificate it replaces")
	}
	if r.ReplacedBy != "" {
		if o, err := c.loadOrder(r.ReplacedBy); err == nil && o.Status != acme.StatusInvalid {
			return nil, problem(probAlreadyReplaced, http.StatusConflict, "replaces: the certificate is already being replaced by another order")
		}
	}
	return r, nil
}

// markReplaced records which order replaces a certificate.
func (c *call) markReplaced(certID, orderID string) *acme.Problem {
	unlock, err := c.s.lock(c.ctx, "cert/"+certID)
	if err != nil {
		return c.storageFailed(err)
	}
	defer unlock()
	r, err := c.loadCert(certID)
	if err != nil {
		return c.storageFailed(err)
	}
	r.ReplacedBy = orderID
	if err := c.s.save(c.ctx, keyCerts+certID, r); err != nil {
		return c.storageFailed(err)
	}
	return nil
}
