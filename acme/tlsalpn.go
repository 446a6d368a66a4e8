package acme

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// ALPNProto is the ALPN protocol name of tls-alpn-01 (RFC 8737).
const ALPNProto = "acme-tls/1"

// idPeAcmeIdentifier is the OID of the acmeIdentifier extension (RFC 8737,
// section 6.1).
var idPeAcmeIdentifier = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}

// TLSALPN01Certificate returns the self-signed certificate that answers a
// tls-alpn-01 challenge (RFC 8737, section 3): a fresh P-256 key (never the
// account or certificate key), exactly one subjectAltName equal to the
// challenge's identifier, and the critical acmeIdentifier extension holding
// SHA-256 of the key authorization.
func TLSALPN01Certificate(chal Challenge) (*tls.Certificate, error) {
	if chal.KeyAuthorization == "" {
		return nil, errors.New("acme: tls-alpn-01: challenge has no key authorization")
	}
	sum := sha256.Sum256([]byte(chal.KeyAuthorization))
	extValue, err := asn1.Marshal(sum[:])
	if err != nil {
		return nil, fmt.Errorf("acme: tls-alpn-01: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("acme: tls-alpn-01: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("acme: tls-alpn-01: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:    serial,
		Subject:         pkix.Name{CommonName: "tlsmint tls-alpn-01"},
		NotBefore:       now.Add(-time.Hour),
		NotAfter:        now.Add(24 * time.Hour),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		ExtraExtensions: []pkix.Extension{{Id: idPeAcmeIdentifier, Critical: true, Value: extValue}},
	}
	switch chal.Identifier.Type {
	case IdentifierDNS:
		if chal.Identifier.Value == "" {
			return nil, errors.New("acme: tls-alpn-01: empty identifier")
		}
		tmpl.DNSNames = []string{strings.ToLower(strings.TrimSuffix(chal.Identifier.Value, "."))}
	case IdentifierIP:
		ip := net.ParseIP(chal.Identifier.Value)
		if ip == nil {
			return nil, fmt.Errorf("acme: tls-alpn-01: bad IP identifier %q", chal.Identifier.Value)
		}
		tmpl.IPAddresses = []net.IP{ip}
	default:
		return nil, fmt.Errorf("acme: tls-alpn-01: unsupported identifier type %q", chal.Identifier.Type)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("acme: tls-alpn-01: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("acme: tls-alpn-01: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// ReverseName returns the reverse-lookup name of an address, under
// in-addr.arpa or ip6.arpa, lower case and without a trailing dot: the SNI
// in which a CA asks for the tls-alpn-01 challenge of an IP identifier
// (RFC 8738, section 6).
func ReverseName(a netip.Addr) string {
	var b strings.Builder
	if a.Is4() {
		o := a.As4()
		for i := 3; i >= 0; i-- {
			b.WriteString(strconv.Itoa(int(o[i])))
			b.WriteByte('.')
		}
		b.WriteString("in-addr.arpa")
		return b.String()
	}
	o := a.As16()
	const hex = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		b.WriteByte(hex[o[i]&0xf])
		b.WriteByte('.')
		b.WriteByte(hex[o[i]>>4])
		b.WriteByte('.')
	}
	b.WriteString("ip6.arpa")
	return b.String()
}
