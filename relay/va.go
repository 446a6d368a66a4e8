package relay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/tlsmint/tlsmint/acme"
)

// DefaultValidationTimeout bounds one downstream validation when
// Validator.Timeout is zero.
const DefaultValidationTimeout = 10 * time.Second

// Limits of a validation's exchanges with the client's server.
const (
	maxHTTP01Body   = 1 << 10 // a key authorization is 87 bytes
	maxRedirects    = 10
	maxTXTRecords   = 100
	maxHeaderBytes  = 16 << 10
	validationAgent = "tlsmint-relay-validation/1"
)

// idPeACMEIdentifier is the OID of the tls-alpn-01 certificate extension
// (RFC 8737, section 3).
var idPeACMEIdentifier = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}

// A Resolver looks names up for a [Validator]. *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// A Validator checks that a downstream client controls an identifier, by
// the rules of RFC 8555 section 8 (http-01, dns-01), RFC 8737
// (tls-alpn-01) and RFC 8738 (IP addresses), as Boulder's and Pebble's
// validation authorities do: http-01 fetches
// http://<identifier>/.well-known/acme-challenge/<token> (port 80),
// following at most 10 redirects to http or https on ports 80 and 443,
// and wants exactly the key authorization (trailing white space
// ignored, at most 1 KiB); tls-alpn-01 connects to port 443 offering only
// acme-tls/1, with the identifier (for an address, its reverse-DNS name)
// as SNI, and wants a certificate for exactly that identifier with the
// critical id-pe-acmeIdentifier extension holding SHA-256 of the key
// authorization; dns-01 wants a TXT record at _acme-challenge.<name>
// holding its base64url.
//
// Its zero value is ready to use. Its fields must not change after first
// use; it is safe for concurrent use.
type Validator struct {
	// HTTPPort is where http-01 connects, and where redirects to port 80
	// go. Zero means 80.
	HTTPPort int
	// TLSPort is where tls-alpn-01 connects, and where redirects to
	// https go. Zero means 443.
	TLSPort int
	// Resolver resolves names and TXT records. Nil means the system's
	// (net.DefaultResolver).
	Resolver Resolver
	// Timeout bounds one validation. Zero means DefaultValidationTimeout.
	Timeout time.Duration
}

func (s *Server) validator() *Validator {
	if s.Validator != nil {
		return s.Validator
	}
	return &defaultValidator
}

var defaultValidator Validator

func (v *Validator) timeout() time.Duration {
	if v.Timeout > 0 {
		return v.Timeout
	}
	return DefaultValidationTimeout
}

func (v *Validator) resolver() Resolver {
	if v.Resolver != nil {
		return v.Resolver
	}
	return net.DefaultResolver
}

func (v *Validator) httpPort() int {
	if v.HTTPPort > 0 {
		return v.HTTPPort
	}
	return 80
}

func (v *Validator) tlsPort() int {
	if v.TLSPort > 0 {
		return v.TLSPort
	}
	return 443
}

// Validate checks one challenge of type typ for the identifier (without
// any "*."), with the client's token and key authorization. It returns
// nil when the client proved control, and otherwise a *acme.Problem
// (unauthorized, incorrectResponse, connection, dns or tls) saying why.
func (v *Validator) Validate(ctx context.Context, typ string, id acme.Identifier, token, keyAuth string) error {
	ctx, cancel := context.WithTimeout(ctx, v.timeout())
	defer cancel()
	var p *acme.Problem
	switch typ {
	case acme.ChallengeHTTP01:
		p = v.http01(ctx, id, token, keyAuth)
	case acme.ChallengeTLSALPN01:
		p = v.tlsALPN01(ctx, id, keyAuth)
	case acme.ChallengeDNS01:
		if id.Type != acme.IdentifierDNS {
			p = malformed("dns-01 cannot validate an IP address")
		} else {
			p = v.dns01(ctx, id, keyAuth)
		}
	default:
		p = malformed("unknown challenge type %q", clip(typ, 32))
	}
	if p != nil {
		p.Identifier = &acme.Identifier{Type: id.Type, Value: id.Value}
		return p
	}
	return nil
}

// vaError carries a validation problem through net/http.
type vaError struct{ p *acme.Problem }

func (e *vaError) Error() string { return e.p.Detail }

// problemOf turns a network error into the validation problem it means.
func problemOf(err error, what string) *acme.Problem {
	var ve *vaError
	if errors.As(err, &ve) {
		return ve.p
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return problem(probConnection, http.StatusBadRequest, "%s: timed out", what)
	}
	var rec tls.RecordHeaderError
	if errors.As(err, &rec) {
		return problem(probTLS, http.StatusBadRequest, "%s: the server does not speak TLS", what)
	}
	return problem(probConnection, http.StatusBadRequest, "%s: %s", what, clip(err.Error(), 200))
}

// dialHost resolves host (a name or an address literal) and connects to
// port, trying IPv6 addresses first, then IPv4.
func (v *Validator) dialHost(ctx context.Context, host string, port int) (net.Conn, error) {
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a.Unmap()}
	} else {
		found, err := v.resolver().LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, &vaError{problem(probDNS, http.StatusBadRequest, "looking up %s: %s", clip(host, 253), dnsReason(err))}
		}
		for _, a := range found {
			if a.Unmap().Is6() {
				addrs = append(addrs, a)
			}
		}
		for _, a := range found {
			if a.Unmap().Is4() {
				addrs = append(addrs, a.Unmap())
			}
		}
		if len(addrs) == 0 {
			return nil, &vaError{problem(probDNS, http.StatusBadRequest, "%s has no address", clip(host, 253))}
		}
	}
	var d net.Dialer
	var first error
	for i, a := range addrs {
		if i == 2 {
			break // one address of each family, as Boulder tries
		}
		conn, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(a, uint16(port)).String())
		if err == nil {
			return conn, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, &vaError{problem(probConnection, http.StatusBadRequest, "connecting to %s port %d: %s", clip(host, 253), port, clip(first.Error(), 200))}
}

// dnsReason says briefly why a look-up failed.
func dnsReason(err error) string {
	var de *net.DNSError
	if errors.As(err, &de) {
		switch {
		case de.IsNotFound:
			return "no such name"
		case de.IsTimeout:
			return "timed out"
		}
		return clip(de.Err, 100)
	}
	return clip(err.Error(), 100)
}

// dial is the http-01 transport's dialer: ports 80 and 443 map to
// HTTPPort and TLSPort; no other port is reached.
func (v *Validator) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, &vaError{problem(probConnection, http.StatusBadRequest, "bad address %q", clip(addr, 256))}
	}
	switch port {
	case "80":
		return v.dialHost(ctx, host, v.httpPort())
	case "443":
		return v.dialHost(ctx, host, v.tlsPort())
	}
	return nil, &vaError{unauthorized("port %s is not allowed for validation", clip(port, 8))}
}

// checkRedirect allows at most maxRedirects redirects, to http or https
// URLs on the standard ports with a name or address as host.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return &vaError{unauthorized("more than %d redirects", maxRedirects)}
	}
	u := req.URL
	if u.Scheme != "http" && u.Scheme != "https" {
		return &vaError{unauthorized("redirect to a %q URL", clip(u.Scheme, 16))}
	}
	if p := u.Port(); p != "" && p != "80" && p != "443" {
		return &vaError{unauthorized("redirect to port %s (only 80 and 443)", clip(p, 8))}
	}
	if u.User != nil || u.Hostname() == "" {
		return &vaError{unauthorized("redirect to %q, which has no plain host", clip(u.String(), 256))}
	}
	return nil
}

// hostLiteral returns the identifier as a URL host.
func hostLiteral(id acme.Identifier) string {
	if id.Type == acme.IdentifierIP && strings.Contains(id.Value, ":") {
		return "[" + id.Value + "]"
	}
	return id.Value
}

func (v *Validator) http01(ctx context.Context, id acme.Identifier, token, keyAuth string) *acme.Problem {
	tr := &http.Transport{
		DialContext:            v.dial,
		TLSClientConfig:        &tls.Config{InsecureSkipVerify: true}, // redirects to https: the certificate is not what is checked (as Boulder)
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: maxHeaderBytes,
		ResponseHeaderTimeout:  v.timeout(),
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: checkRedirect}
	u := "http://" + hostLiteral(id) + "/.well-known/acme-challenge/" + token
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return internalError("building the http-01 request failed")
	}
	req.Header.Set("User-Agent", validationAgent)
	req.Header.Set("Accept", "*/*")
	resp, err := client.Do(req)
	if err != nil {
		return problemOf(err, "http-01")
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return unauthorized("http-01: %s answered HTTP %d", clip(resp.Request.URL.String(), 256), resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTP01Body+1))
	if err != nil {
		return problemOf(err, "http-01: reading the response")
	}
	if len(body) > maxHTTP01Body {
		return unauthorized("http-01: the response is longer than %d bytes", maxHTTP01Body)
	}
	if got := strings.TrimRight(string(body), " \t\r\n"); got != keyAuth {
		// The body is not echoed: the URL may be an internal service's,
		// reached by a redirect, and its answer is not the client's to read.
		return unauthorized("http-01: the %d-byte response is not the key authorization", len(got))
	}
	return nil
}

func (v *Validator) tlsALPN01(ctx context.Context, id acme.Identifier, keyAuth string) *acme.Problem {
	sni := id.Value
	var ip netip.Addr
	if id.Type == acme.IdentifierIP {
		a, err := netip.ParseAddr(id.Value)
		if err != nil {
			return malformed("bad IP identifier")
		}
		ip, sni = a, acme.ReverseName(a)
	}
	conn, err := v.dialHost(ctx, id.Value, v.tlsPort())
	if err != nil {
		return problemOf(err, "tls-alpn-01")
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	tc := tls.Client(conn, &tls.Config{
		ServerName:         sni,
		NextProtos:         []string{"acme-tls/1"},
		InsecureSkipVerify: true, // the certificate is the proof, checked below
		MinVersion:         tls.VersionTLS12,
	})
	if err := tc.HandshakeContext(ctx); err != nil {
		return problem(probTLS, http.StatusBadRequest, "tls-alpn-01: handshake: %s", clip(err.Error(), 200))
	}
	cs := tc.ConnectionState()
	if cs.NegotiatedProtocol != "acme-tls/1" {
		return unauthorized("tls-alpn-01: the server did not negotiate acme-tls/1")
	}
	if len(cs.PeerCertificates) == 0 {
		return problem(probTLS, http.StatusBadRequest, "tls-alpn-01: no certificate")
	}
	return checkALPNCert(cs.PeerCertificates[0], id, ip, keyAuth)
}

// checkALPNCert checks a tls-alpn-01 certificate (RFC 8737, section 3).
func checkALPNCert(leaf *x509.Certificate, id acme.Identifier, ip netip.Addr, keyAuth string) *acme.Problem {
	if len(leaf.EmailAddresses) > 0 || len(leaf.URIs) > 0 {
		return unauthorized("tls-alpn-01: the certificate has other names than the identifier")
	}
	if id.Type == acme.IdentifierIP {
		ok := len(leaf.DNSNames) == 0 && len(leaf.IPAddresses) == 1
		if ok {
			a, _ := netip.AddrFromSlice(leaf.IPAddresses[0])
			ok = a.Unmap() == ip.Unmap()
		}
		if !ok {
			return unauthorized("tls-alpn-01: the certificate is not for exactly %s", id.Value)
		}
	} else if len(leaf.IPAddresses) > 0 || len(leaf.DNSNames) != 1 || !strings.EqualFold(leaf.DNSNames[0], id.Value) {
		return unauthorized("tls-alpn-01: the certificate is not for exactly %s", clip(id.Value, 253))
	}
	want := sha256.Sum256([]byte(keyAuth))
	for _, ext := range leaf.Extensions {
		if !ext.Id.Equal(idPeACMEIdentifier) {
			continue
		}
		if !ext.Critical {
			return unauthorized("tls-alpn-01: the acmeIdentifier extension is not critical")
		}
		var got []byte
		rest, err := asn1.Unmarshal(ext.Value, &got)
		if err != nil || len(rest) > 0 {
			return unauthorized("tls-alpn-01: the acmeIdentifier extension is malformed")
		}
		if !bytes.Equal(got, want[:]) {
			return unauthorized("tls-alpn-01: the acmeIdentifier extension does not hold this key authorization's digest")
		}
		return nil
	}
	return unauthorized("tls-alpn-01: the certificate has no acmeIdentifier extension")
}

func (v *Validator) dns01(ctx context.Context, id acme.Identifier, keyAuth string) *acme.Problem {
	name := "_acme-challenge." + id.Value
	txts, err := v.resolver().LookupTXT(ctx, name)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return unauthorized("dns-01: no TXT record at %s", clip(name, 253))
		}
		return problem(probDNS, http.StatusBadRequest, "dns-01: looking up TXT %s: %s", clip(name, 253), dnsReason(err))
	}
	sum := sha256.Sum256([]byte(keyAuth))
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	for i, t := range txts {
		if i == maxTXTRecords {
			break
		}
		if t == want {
			return nil
		}
	}
	return unauthorized("dns-01: none of the %d TXT records at %s is this challenge's", len(txts), clip(name, 253))
}
