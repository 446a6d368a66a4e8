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
	"slices"
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
// It connects only to addresses outside the reserved ranges (loopback,
// link-local, private, shared, unique local, unspecified, multicast,
// documentation, benchmarking and other special-purpose ranges; see
// docs/relay.md), unless the call allows them ([AllowTargets]; the
// Server passes the tenant's Policy.ValidationTargets). The check is
// made on each address actually dialled, after resolution, for every
// connection of a validation, each redirect included, so a name that
// resolves to a public address once and to loopback the next time
// gets no further. Of a name's addresses it tries the first allowed
// IPv6 address and then the first allowed IPv4 one.
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
	// Dialer makes the validation's TCP connections, to the addresses
	// the address policy allowed (as "address:port"). Nil means a
	// net.Dialer.
	Dialer interface {
		DialContext(ctx context.Context, network, address string) (net.Conn, error)
	}
}

// A ValidateOption changes one [Validator.Validate] call. [AllowTargets]
// makes one.
type ValidateOption interface {
	apply(*validation)
}

type allowTargets []netip.Prefix

func (a allowTargets) apply(v *validation) { v.policy.allow = append(v.policy.allow, a...) }

// AllowTargets lets one validation connect to addresses in ranges even
// where they are reserved (loopback, private, link-local, …): a relay
// serving an internal network allows a tenant its own internal ranges
// this way (Policy.ValidationTargets).
func AllowTargets(ranges ...netip.Prefix) ValidateOption {
	return allowTargets(slices.Clone(ranges))
}

// A validation is one Validate call: the Validator and the addresses it
// may connect to.
type validation struct {
	v      *Validator
	policy addrPolicy
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

func (v *Validator) dialer() interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
} {
	if v.Dialer != nil {
		return v.Dialer
	}
	return &net.Dialer{}
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
func (v *Validator) Validate(ctx context.Context, typ string, id acme.Identifier, token, keyAuth string, opts ...ValidateOption) error {
	ctx, cancel := context.WithTimeout(ctx, v.timeout())
	defer cancel()
	val := &validation{v: v}
	for _, o := range opts {
		o.apply(val)
	}
	var p *acme.Problem
	switch typ {
	case acme.ChallengeHTTP01:
		p = val.http01(ctx, id, token, keyAuth)
	case acme.ChallengeTLSALPN01:
		p = val.tlsALPN01(ctx, id, keyAuth)
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
// port: to the first IPv6 address the address policy allows, then to the
// first IPv4 one. An address the policy refuses is never dialled.
func (val *validation) dialHost(ctx context.Context, host string, port int) (net.Conn, error) {
	v := val.v
	var found []netip.Addr
	literal := false
	if a, err := netip.ParseAddr(host); err == nil {
		found, literal = []netip.Addr{a}, true
	} else {
		found, err = v.resolver().LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, &vaError{problem(probDNS, http.StatusBadRequest, "looking up %s: %s", clip(host, 253), dnsReason(err))}
		}
		if len(found) == 0 {
			return nil, &vaError{problem(probDNS, http.StatusBadRequest, "%s has no address", clip(host, 253))}
		}
	}
	var v6, v4, refused netip.Addr
	var refusedKind string
	for _, a := range found {
		a = a.Unmap()
		if k := val.policy.check(a); k != "" {
			if !refused.IsValid() {
				refused, refusedKind = a, k
			}
			continue
		}
		if a.Is6() && !v6.IsValid() {
			v6 = a
		}
		if a.Is4() && !v4.IsValid() {
			v4 = a
		}
	}
	var addrs []netip.Addr
	for _, a := range []netip.Addr{v6, v4} {
		if a.IsValid() {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		what := "address " + refused.String() + " is"
		if !literal {
			what = clip(host, 253) + " resolves to " + refused.String() + ", which is"
			if len(found) > 1 {
				what = clip(host, 253) + " resolves only to addresses that are not allowed, such as " + refused.String() + ", which is"
			}
		}
		return nil, &vaError{problem(probConnection, http.StatusBadRequest,
			"%s not allowed for this tenant (reserved: %s); the relay's administrator can allow the range in the tenant's policy (validation_targets)", what, refusedKind)}
	}
	var first error
	for _, a := range addrs {
		conn, err := v.dialer().DialContext(ctx, "tcp", netip.AddrPortFrom(a, uint16(port)).String())
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
func (val *validation) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	v := val.v
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, &vaError{problem(probConnection, http.StatusBadRequest, "bad address %q", clip(addr, 256))}
	}
	switch port {
	case "80":
		return val.dialHost(ctx, host, v.httpPort())
	case "443":
		return val.dialHost(ctx, host, v.tlsPort())
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

func (val *validation) http01(ctx context.Context, id acme.Identifier, token, keyAuth string) *acme.Problem {
	v := val.v
	tr := &http.Transport{
		Proxy:                  nil, // the address policy applies to the target, not to a proxy
		DialContext:            val.dial,
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
	// What a redirect target answered (its status, its length, its body)
	// is not told: it may be a service the client cannot otherwise see.
	redirected := resp.Request.URL.String() != u
	if resp.StatusCode != http.StatusOK {
		if redirected {
			return unauthorized("http-01: the redirect target %s did not answer with the key authorization", clip(resp.Request.URL.String(), 256))
		}
		return unauthorized("http-01: %s answered HTTP %d", clip(u, 256), resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTP01Body+1))
	if err != nil {
		return problemOf(err, "http-01: reading the response")
	}
	got := strings.TrimRight(string(body), " \t\r\n")
	switch {
	case got == keyAuth && len(body) <= maxHTTP01Body:
		return nil
	case redirected:
		return unauthorized("http-01: the redirect target %s did not answer with the key authorization", clip(resp.Request.URL.String(), 256))
	case len(body) > maxHTTP01Body:
		return unauthorized("http-01: the response is longer than %d bytes", maxHTTP01Body)
	}
	// The body is not echoed: it is not the client's to read back.
	return unauthorized("http-01: the %d-byte response is not the key authorization", len(got))
}

func (val *validation) tlsALPN01(ctx context.Context, id acme.Identifier, keyAuth string) *acme.Problem {
	v := val.v
	sni := id.Value
	var ip netip.Addr
	if id.Type == acme.IdentifierIP {
		a, err := netip.ParseAddr(id.Value)
		if err != nil {
			return malformed("bad IP identifier")
		}
		ip, sni = a, acme.ReverseName(a)
	}
	conn, err := val.dialHost(ctx, id.Value, v.tlsPort())
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
