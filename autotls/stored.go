package autotls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// storedCert is how a certificate, its key and the metadata its lifecycle
// needs are kept: one value, written atomically, so that a reader never sees
// a certificate without its key.
type storedCert struct {
	Version        int       `json:"version"`
	Name           string    `json:"name"`
	CertificatePEM string    `json:"certificate_pem"`
	PrivateKeyPEM  string    `json:"private_key_pem"`
	Issuer         string    `json:"issuer"`
	OrderURL       string    `json:"order_url,omitempty"`
	CertificateURL string    `json:"certificate_url,omitempty"`
	ObtainedAt     time.Time `json:"obtained_at"`
	// AccountURL is the account that obtained the certificate; renewals
	// send "replaces" only when the same account renews it.
	AccountURL string `json:"account_url,omitempty"`
	// ARI is the CA's last renewal information for the certificate (RFC
	// 9773), so that a restart and every node of a fleet reuse it until
	// its next poll.
	ARI *ariState `json:"ari,omitempty"`
	// LastFailure records the last failed attempt to replace it, for
	// operators; Manager.Certificates reports it (storedFailure).
	LastFailure *failureState `json:"last_failure,omitempty"`
}

type ariState struct {
	WindowStart    time.Time `json:"window_start"`
	WindowEnd      time.Time `json:"window_end"`
	ExplanationURL string    `json:"explanation_url,omitempty"`
	// NextPoll is when to ask the CA again (its Retry-After, clamped to
	// between a minute and a day).
	NextPoll time.Time `json:"next_poll,omitzero"`
}

type failureState struct {
	At    time.Time `json:"at"`
	Error string    `json:"error"`
}

const storedVersion = 1

// errCorrupt marks a stored value that cannot be used.
var errCorrupt = errors.New("autotls: stored certificate is corrupt")

// tlsCertificate parses the stored value into a certificate ready to serve,
// checking that the key matches and that it covers name.
func (s *storedCert) tlsCertificate(name string) (*tls.Certificate, error) {
	if s.Version != storedVersion {
		return nil, fmt.Errorf("%w: version %d", errCorrupt, s.Version)
	}
	cert, err := tls.X509KeyPair([]byte(s.CertificatePEM), []byte(s.PrivateKeyPEM))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%w: %v", errCorrupt, err)
		}
	}
	if !covers(cert.Leaf, name) {
		return nil, fmt.Errorf("%w: certificate does not cover %q", errCorrupt, name)
	}
	return &cert, nil
}

// covers reports whether leaf holds exactly the SAN name (a host, a
// "*.domain" wildcard or an IP address).
func covers(leaf *x509.Certificate, name string) bool {
	if a, ok := parseIPName(name); ok {
		for _, ip := range leaf.IPAddresses {
			if ip.Equal(a.AsSlice()) {
				return true
			}
		}
		return false
	}
	for _, n := range leaf.DNSNames {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// encodeStoredCert encodes a complete stored value.
func encodeStoredCert(s *storedCert) ([]byte, error) {
	s.Version = storedVersion
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("autotls: encoding stored certificate: %w", err)
	}
	return b, nil
}

func decodeStored(b []byte) (*storedCert, error) {
	s := new(storedCert)
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	return s, nil
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("autotls: encoding key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func decodeKey(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("autotls: no PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("autotls: parsing key: %w", err)
	}
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("autotls: unsupported stored key %T", k)
}

// issuerKey turns a directory URL into a storage key segment:
// "acme-v02.api.letsencrypt.org-directory".
func issuerKey(dir string) string {
	u, err := url.Parse(dir)
	if err != nil || u.Host == "" {
		return "unknown-issuer"
	}
	s := u.Host + strings.TrimSuffix(u.Path, "/")
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
			return r
		}
		return '-'
	}, s)
}

// storageName turns a managed name into a key segment; '*' becomes
// "_wildcard" so that keys stay plain on every file system.
func storageName(name string) string {
	if base, ok := strings.CutPrefix(name, "*."); ok {
		return "_wildcard." + base
	}
	return strings.ReplaceAll(name, ":", "-") // IPv6
}
