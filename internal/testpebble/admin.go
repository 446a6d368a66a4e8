package testpebble

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/letsencrypt/pebble/v2/core"
)

// Revoke marks cert, an end-entity certificate this CA issued, as revoked with the given RFC 5280
// reason code, out of band (as if an operator had done it). ARI then
// suggests renewing at once, and revokeCert requests for it fail with
// alreadyRevoked.
func (c *CA) Revoke(cert *x509.Certificate, reason int) error {
	if cert == nil {
		return errors.New("testpebble: revoke: nil certificate")
	}
	if reason < 0 || reason > 10 {
		return fmt.Errorf("testpebble: revoke: reason code %d out of range [0, 10]", reason)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	store := c.cur.Load().db
	issued := store.GetCertificateByDER(cert.Raw)
	if issued == nil || issued.Cert.IsCA {
		return fmt.Errorf("testpebble: revoke: certificate with serial %x was not issued by this CA", cert.SerialNumber)
	}
	if store.GetRevokedCertificateByDER(cert.Raw) != nil {
		return fmt.Errorf("testpebble: revoke: certificate with serial %x is already revoked", cert.SerialNumber)
	}
	r := uint(reason)
	store.RevokeCertificate(&core.RevokedCertificate{
		Certificate: issued,
		RevokedAt:   time.Now(),
		Reason:      &r,
	})
	return nil
}

// renewalInfo is the body of an ARI response (RFC 9773, section 4.2).
type renewalInfo struct {
	SuggestedWindow struct {
		Start time.Time `json:"start"`
		End   time.Time `json:"end"`
	} `json:"suggestedWindow"`
	ExplanationURL string `json:"explanationURL,omitempty"`
}

// SetRenewalInfo makes the CA's renewalInfo resource for cert, which this CA
// issued, suggest renewing between start and end, with an optional
// explanation URL. Pebble sends it with "Retry-After: 21600". The same
// caveat as for [CA.SetRenewalInfoJSON] applies.
func (c *CA) SetRenewalInfo(cert *x509.Certificate, start, end time.Time, explanationURL string) error {
	var ri renewalInfo
	ri.SuggestedWindow.Start = start.UTC().Truncate(time.Second)
	ri.SuggestedWindow.End = end.UTC().Truncate(time.Second)
	ri.ExplanationURL = explanationURL
	body, err := json.Marshal(ri)
	if err != nil {
		return fmt.Errorf("testpebble: renewal info: %w", err)
	}
	return c.SetRenewalInfoJSON(cert, string(body))
}

// SetRenewalInfoJSON makes the CA's renewalInfo resource for cert answer
// body verbatim, which need not be valid JSON (to test how clients cope).
//
// Pebble reads the stored body without a lock: set it while no renewalInfo
// request for cert is in flight, or the race detector may complain.
func (c *CA) SetRenewalInfoJSON(cert *x509.Certificate, body string) error {
	if cert == nil {
		return errors.New("testpebble: renewal info: nil certificate")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.cur.Load().db.SetARIResponse(cert.SerialNumber, body); err != nil {
		return fmt.Errorf("testpebble: renewal info: %w", err)
	}
	return nil
}

// AddEABKey adds an external account binding key: kid is the key ID, b64key
// the HMAC key in base64url without padding. Adding a key ID twice fails.
// The key survives [CA.Reset].
func (c *CA) AddEABKey(kid, b64key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.cur.Load().db.AddExternalAccountKeyByID(kid, b64key); err != nil {
		return fmt.Errorf("testpebble: EAB key %q: %w", kid, err)
	}
	if c.eab == nil {
		c.eab = make(map[string]string)
	}
	c.eab[kid] = b64key
	return nil
}
