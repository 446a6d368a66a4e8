package acme

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// A Chain is one certificate chain the server offers for an order: the leaf
// first, then the intermediates in order (RFC 8555, section 7.4.2).
type Chain struct {
	// URL is where the chain was downloaded.
	URL string
	// Certificates holds the parsed certificates, leaf first.
	Certificates []*x509.Certificate
	// PEM is the chain as the server sent it, re-encoded to clean PEM.
	PEM []byte
}

// Leaf returns the end-entity certificate.
func (ch *Chain) Leaf() *x509.Certificate { return ch.Certificates[0] }

// DER returns the chain's certificates as DER, leaf first, as
// [crypto/tls.Certificate] wants them.
func (ch *Chain) DER() [][]byte {
	out := make([][]byte, len(ch.Certificates))
	for i, c := range ch.Certificates {
		out[i] = c.Raw
	}
	return out
}

// TopIssuer returns the common name of the issuer of the chain's last
// certificate: the root the chain leads to.
func (ch *Chain) TopIssuer() string {
	return ch.Certificates[len(ch.Certificates)-1].Issuer.CommonName
}

// matches reports whether the chain leads to a root or passes an issuer
// with the given common name.
func (ch *Chain) matches(name string) bool {
	if strings.EqualFold(ch.TopIssuer(), name) {
		return true
	}
	for _, c := range ch.Certificates[1:] {
		if strings.EqualFold(c.Subject.CommonName, name) || strings.EqualFold(c.Issuer.CommonName, name) {
			return true
		}
	}
	return false
}

// PreferChain returns the first chain whose root (the issuer of its last
// certificate) has the common name name, else the first chain that contains
// an issuer of that name, else chains[0], the server's default. It returns
// nil when chains is empty.
func PreferChain(chains []*Chain, name string) *Chain {
	if len(chains) == 0 {
		return nil
	}
	if name != "" {
		for _, ch := range chains {
			if strings.EqualFold(ch.TopIssuer(), name) {
				return ch
			}
		}
		for _, ch := range chains {
			if ch.matches(name) {
				return ch
			}
		}
	}
	return chains[0]
}

// FetchCertificate downloads the certificate chain of a valid order, and the
// alternate chains the server links with Link: rel="alternate" (at most
// eight, each once). The default chain comes first. An alternate chain
// that cannot be downloaded or parsed is left out (and logged): the
// certificate is issued, and the default chain serves it.
func (c *Client) FetchCertificate(ctx context.Context, url string) ([]*Chain, error) {
	first, alts, err := c.fetchChain(ctx, url)
	if err != nil {
		return nil, err
	}
	chains := []*Chain{first}
	seen := map[string]bool{url: true}
	for _, alt := range alts {
		if seen[alt] {
			continue
		}
		if len(seen) > maxAlternate {
			break
		}
		seen[alt] = true
		ch, _, err := c.fetchChain(ctx, alt)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("acme: alternate chain %s: %w", clipString(alt, 256), err)
			}
			c.logger().WarnContext(ctx, "acme: ignoring an alternate chain that cannot be used", "url", clipString(alt, 256), "err", err)
			continue
		}
		chains = append(chains, ch)
	}
	return chains, nil
}

func (c *Client) fetchChain(ctx context.Context, url string) (*Chain, []string, error) {
	resp, err := c.post(ctx, signer{op: OpCertificate}, url, nil, "application/pem-certificate-chain", maxCertBody)
	if err != nil {
		return nil, nil, fmt.Errorf("acme: fetch certificate: %w", err)
	}
	certs, err := ParseCertificateChain(resp.body)
	if err != nil {
		return nil, nil, err
	}
	var buf bytes.Buffer
	for _, c := range certs {
		pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	alts := linkURLs(resp, "alternate")
	return &Chain{URL: url, Certificates: certs, PEM: buf.Bytes()}, alts, nil
}

// ErrMalformedChain is returned when a certificate download is not a usable
// PEM chain.
var ErrMalformedChain = errors.New("acme: malformed certificate chain")

// ParseCertificateChain parses a PEM certificate chain, leaf first, as
// a CA sends it (application/pem-certificate-chain, RFC 8555 section 9.1)
// and as tlsmint stores and writes it. Text before each block is skipped
// (as [pem.Decode] does); anything else that is not a CERTIFICATE block (a private key
// beside the chain, trailing data), a certificate that does not parse,
// no certificate at all, or more than ten are an error matching
// [ErrMalformedChain].
func ParseCertificateChain(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := b
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: unexpected PEM block %q", ErrMalformedChain, block.Type)
		}
		if len(certs) == maxChainLen {
			return nil, fmt.Errorf("%w: more than %d certificates", ErrMalformedChain, maxChainLen)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformedChain, err)
		}
		certs = append(certs, cert)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: trailing data after the last certificate", ErrMalformedChain)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no certificate", ErrMalformedChain)
	}
	return certs, nil
}

// linkURLs returns the https URLs of the response's Link headers with the
// given relation.
func linkURLs(resp *response, rel string) []string {
	var out []string
	for _, h := range resp.header.Values("Link") {
		for _, link := range strings.Split(h, ",") {
			parts := strings.Split(link, ";")
			target := strings.TrimSpace(parts[0])
			if !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
				continue
			}
			target = target[1 : len(target)-1]
			for _, p := range parts[1:] {
				k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
				if ok && strings.EqualFold(strings.TrimSpace(k), "rel") && strings.EqualFold(strings.Trim(strings.TrimSpace(v), `"`), rel) {
					if checkURL(target) == nil {
						out = append(out, target)
					}
				}
			}
		}
	}
	return out
}

// Revocation reasons (RFC 5280, section 5.3.1) accepted by ACME servers.
const (
	ReasonUnspecified          = 0
	ReasonKeyCompromise        = 1
	ReasonAffiliationChanged   = 3
	ReasonSuperseded           = 4
	ReasonCessationOfOperation = 5
)

// RevokeCertificate revokes a certificate (RFC 8555, section 7.6). With key
// nil the request is signed by the account (which must have issued the
// certificate or hold authorizations for all its names); with the
// certificate's own private key it is signed by that key, which needs no
// account.
func (c *Client) RevokeCertificate(ctx context.Context, certDER []byte, key crypto.Signer, reason int) error {
	k := key
	if k == nil {
		k = c.accountKey()
	}
	if _, err := signingAlg(k); err != nil {
		return err
	}
	dir, err := c.Directory(ctx)
	if err != nil {
		return err
	}
	if dir.RevokeCert == "" {
		return errors.New("acme: server has no revokeCert endpoint")
	}
	s := signer{op: OpRevoke}
	if key != nil {
		s = signer{key: key, useJWK: true, op: OpRevoke}
	}
	_, err = c.post(ctx, s, dir.RevokeCert, struct {
		Certificate string `json:"certificate"`
		Reason      int    `json:"reason"`
	}{base64.RawURLEncoding.EncodeToString(certDER), reason}, "", maxJSONBody)
	if err != nil {
		return fmt.Errorf("acme: revoke: %w", err)
	}
	return nil
}
