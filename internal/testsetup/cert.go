package testsetup

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

// Template returns the template of a server certificate for names (DNS
// names, or IP addresses where they parse as one) valid from notBefore to
// notAfter, with the first name as its common name.
func Template(notBefore, notAfter time.Time, names ...string) *x509.Certificate {
	tmpl := &x509.Certificate{
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if len(names) > 0 {
		tmpl.Subject = pkix.Name{CommonName: names[0]}
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	return tmpl
}

// Sign creates the certificate tmpl describes for pub, signed by parent
// with parentKey, or self-signed when parent is nil (parentKey is then the
// key of pub), and returns it parsed. A nil tmpl.SerialNumber is set to a
// random one.
func Sign(tb testing.TB, tmpl *x509.Certificate, pub crypto.PublicKey, parent *x509.Certificate, parentKey crypto.Signer) *x509.Certificate {
	tb.Helper()
	if tmpl.SerialNumber == nil {
		serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
		if err != nil {
			tb.Fatalf("serial number: %v", err)
		}
		tmpl.SerialNumber = serial
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		tb.Fatalf("creating the certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("parsing the certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	return c
}

// SelfSigned returns the certificate tmpl describes, signed by a fresh
// P-256 key of its own, with that key and its parsed Leaf.
func SelfSigned(tb testing.TB, tmpl *x509.Certificate) tls.Certificate {
	tb.Helper()
	key := Key(tb)
	leaf := Sign(tb, tmpl, key.Public(), nil, key)
	return tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
}

// An Authority is a certificate authority made for a test: a root, or an
// intermediate of one, that issues certificates with fresh keys.
type Authority struct {
	Cert  *x509.Certificate
	Key   crypto.Signer
	chain [][]byte // the certificates sent after an issued leaf
}

// NewAuthority returns a self-signed root named name, valid from a year
// ago for ten years.
func NewAuthority(tb testing.TB, name string) *Authority {
	tb.Helper()
	key := Key(tb)
	return &Authority{Cert: Sign(tb, authorityTemplate(name, 10*365*24*time.Hour), key.Public(), nil, key), Key: key}
}

// Intermediate returns an intermediate authority named name that a
// issues, valid from a year ago for five years; the certificates it issues
// are sent with it.
func (a *Authority) Intermediate(tb testing.TB, name string) *Authority {
	tb.Helper()
	key := Key(tb)
	cert := Sign(tb, authorityTemplate(name, 5*365*24*time.Hour), key.Public(), a.Cert, a.Key)
	return &Authority{Cert: cert, Key: key, chain: append([][]byte{cert.Raw}, a.chain...)}
}

func authorityTemplate(name string, validity time.Duration) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-365 * 24 * time.Hour),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
}

// Pool returns a pool holding a's certificate alone.
func (a *Authority) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(a.Cert)
	return p
}

// Issue returns the certificate tmpl describes for a fresh P-256 key,
// signed by a, with the key, its parsed Leaf and, after the leaf, the
// intermediates up to (not including) the root.
func (a *Authority) Issue(tb testing.TB, tmpl *x509.Certificate) tls.Certificate {
	tb.Helper()
	key := Key(tb)
	leaf := Sign(tb, tmpl, key.Public(), a.Cert, a.Key)
	return tls.Certificate{Certificate: append([][]byte{leaf.Raw}, a.chain...), PrivateKey: key, Leaf: leaf}
}
