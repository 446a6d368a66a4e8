package acme

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// RenewalInfo is the server's renewal suggestion for a certificate
// (ACME Renewal Information, RFC 9773).
type RenewalInfo struct {
	// SuggestedWindow is when the server suggests renewing.
	SuggestedWindow struct {
		Start time.Time `json:"start"`
		End   time.Time `json:"end"`
	} `json:"suggestedWindow"`
	// ExplanationURL, if set, explains why the window is what it is (for
	// example a mass revocation).
	ExplanationURL string `json:"explanationURL,omitempty"`
	// RetryAfter is when to ask again (the response's Retry-After),
	// clamped to [MinRetryAfter, MaxRetryAfter]; zero if absent.
	RetryAfter time.Duration `json:"-"`
}

// ErrNoRenewalInfo is returned by [Client.RenewalInfo] when the server does
// not offer ARI.
var ErrNoRenewalInfo = errors.New("acme: server does not offer renewal information")

// CertificateID returns the ARI certificate identifier of cert (RFC 9773,
// section 4.1): base64url(authority key identifier) "." base64url(DER
// encoding of the serial number's INTEGER contents), both without padding.
func CertificateID(cert *x509.Certificate) (string, error) {
	if cert == nil {
		return "", errors.New("acme: certificate ID: nil certificate")
	}
	if len(cert.AuthorityKeyId) == 0 {
		return "", errors.New("acme: certificate ID: certificate has no authority key identifier")
	}
	if cert.SerialNumber == nil {
		return "", errors.New("acme: certificate ID: certificate has no serial number")
	}
	return certificateID(cert.AuthorityKeyId, cert.SerialNumber)
}

func certificateID(aki []byte, serial *big.Int) (string, error) {
	der, err := asn1.Marshal(serial)
	if err != nil {
		return "", fmt.Errorf("acme: certificate ID: %w", err)
	}
	// der is tag, length, contents; the ID uses the contents only (which
	// keep the leading zero byte of a positive number with its top bit set).
	var raw asn1.RawValue
	if _, err := asn1.Unmarshal(der, &raw); err != nil {
		return "", fmt.Errorf("acme: certificate ID: %w", err)
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(aki) + "." + enc.EncodeToString(raw.Bytes), nil
}

// RenewalInfo fetches the renewal information for cert (RFC 9773). The
// result's RetryAfter says when to ask again.
func (c *Client) RenewalInfo(ctx context.Context, cert *x509.Certificate) (*RenewalInfo, error) {
	id, err := CertificateID(cert)
	if err != nil {
		return nil, err
	}
	dir, err := c.Directory(ctx)
	if err != nil {
		return nil, err
	}
	if dir.RenewalInfo == "" {
		return nil, ErrNoRenewalInfo
	}
	u := strings.TrimSuffix(dir.RenewalInfo, "/") + "/" + id
	resp, err := c.get(ctx, OpRenewalInfo, u, maxJSONBody)
	if err != nil {
		return nil, fmt.Errorf("acme: renewal info: %w", err)
	}
	ri := new(RenewalInfo)
	if err := decodeJSON(resp, ri, "renewal info"); err != nil {
		return nil, err
	}
	w := ri.SuggestedWindow
	if w.Start.IsZero() || w.End.IsZero() || w.End.Before(w.Start) {
		return nil, malformed("renewal info", nil, "bad suggested window %v – %v", w.Start, w.End)
	}
	if ri.ExplanationURL != "" && checkURL(ri.ExplanationURL) != nil {
		ri.ExplanationURL = "" // not a link we would hand to anyone
	}
	ri.RetryAfter = resp.retryAfter
	return ri, nil
}
