package relay

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode"

	"github.com/tlsmint/tlsmint/acme"
)

// maxClientNames bounds Policy.ClientNames, and maxClientName each.
const (
	maxClientNames = 100
	maxClientName  = 256
)

// clientCert returns the client certificate the TLS server verified for
// the request, or nil when there is none (no TLS, no certificate, or one
// the server did not verify, as with tls.RequestClientCert).
func clientCert(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil
	}
	return r.TLS.VerifiedChains[0][0]
}

// clientCertNames returns what Policy.ClientNames are compared with: the
// subject's common name, then the DNS, email and URI subject alternative
// names.
func clientCertNames(c *x509.Certificate) []string {
	var out []string
	if c.Subject.CommonName != "" {
		out = append(out, c.Subject.CommonName)
	}
	out = append(out, c.DNSNames...)
	out = append(out, c.EmailAddresses...)
	for _, u := range c.URIs {
		out = append(out, u.String())
	}
	return out
}

// clientCertLabel names a client certificate in a problem's detail.
func clientCertLabel(c *x509.Certificate) string {
	if names := clientCertNames(c); len(names) > 0 {
		return fmt.Sprintf("%q", clip(names[0], 128))
	}
	return "serial " + c.SerialNumber.Text(16)
}

// requireClientCert refuses a request without a verified client
// certificate when Server.RequireClientCert is set.
func (s *Server) requireClientCert(r *http.Request) *acme.Problem {
	if s.RequireClientCert && clientCert(r) == nil {
		return unauthorized("this relay needs a client certificate signed by one of its client CAs")
	}
	return nil
}

// checkClientCert checks the request's client certificate against a
// policy's ClientNames.
func (p *Policy) checkClientCert(r *http.Request, tenant string) *acme.Problem {
	if len(p.ClientNames) == 0 {
		return nil
	}
	cert := clientCert(r)
	if cert == nil {
		return unauthorized("the accounts of tenant %s need its client certificate", tenant)
	}
	for _, n := range clientCertNames(cert) {
		for _, want := range p.ClientNames {
			if n == want || (strings.EqualFold(n, want) && !strings.Contains(want, ":") && !strings.Contains(want, "@")) {
				return nil
			}
		}
	}
	return unauthorized("the client certificate %s is not one of tenant %s", clientCertLabel(cert), tenant)
}

// checkClientNames reports what is wrong with Policy.ClientNames.
func checkClientNames(names []string) error {
	if len(names) > maxClientNames {
		return fmt.Errorf("relay: at most %d client names", maxClientNames)
	}
	for _, n := range names {
		if n == "" || len(n) > maxClientName {
			return fmt.Errorf("relay: a client name must have 1 to %d bytes", maxClientName)
		}
		if strings.TrimSpace(n) != n || strings.ContainsFunc(n, unicode.IsControl) {
			return errors.New("relay: a client name has control characters or surrounding spaces")
		}
	}
	return nil
}
