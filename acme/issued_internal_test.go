package acme

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"testing"
	"time"
)

// A leaf that has expired, or whose validity is inverted, is refused
// however well it matches; one valid only from tomorrow is accepted.
func TestCheckIssuedValidity(t *testing.T) {
	t.Parallel()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	ids := DNSNames("valid.example.com")
	cases := []struct {
		name                string
		notBefore, notAfter time.Time
		ok                  bool
	}{
		{"current", now.Add(-time.Hour), now.Add(90 * 24 * time.Hour), true},
		{"from tomorrow", now.Add(24 * time.Hour), now.Add(90 * 24 * time.Hour), true},
		{"expired", now.Add(-90 * 24 * time.Hour), now.Add(-time.Hour), false},
		{"expiring now", now.Add(-time.Hour), now, false},
		{"inverted", now.Add(48 * time.Hour), now.Add(24 * time.Hour), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: tc.notBefore, NotAfter: tc.notAfter, DNSNames: []string{"valid.example.com"}}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			err = checkIssued(leaf, key.Public(), ids, now)
			if tc.ok && err != nil {
				t.Fatalf("got %v, want the leaf accepted", err)
			}
			if !tc.ok && !errors.Is(err, ErrCertificateMismatch) {
				t.Fatalf("got %v, want ErrCertificateMismatch", err)
			}
		})
	}
}
