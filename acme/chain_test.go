package acme_test

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testsetup"
)

// pemCert returns a self-signed certificate named cn, PEM-encoded.
func pemCert(t *testing.T, cn string) []byte {
	t.Helper()
	c := testsetup.SelfSigned(t, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)})
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Leaf.Raw})
}

func TestParseCertificateChain(t *testing.T) {
	t.Parallel()
	leaf, inter := pemCert(t, "leaf"), pemCert(t, "intermediate")
	chain := append(append([]byte("subject=leaf\n"), leaf...), inter...)
	certs, err := acme.ParseCertificateChain(chain)
	if err != nil || len(certs) != 2 || certs[0].Subject.CommonName != "leaf" || certs[1].Subject.CommonName != "intermediate" {
		t.Fatalf("ParseCertificateChain(leaf, intermediate) = %d certificates, %v; want both, leaf first", len(certs), err)
	}
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})
	bad := map[string][]byte{
		"empty":           nil,
		"no PEM":          []byte("not a certificate"),
		"a key beside":    append(append([]byte{}, leaf...), key...),
		"trailing data":   append(append([]byte{}, leaf...), "trailing"...),
		"not a DER":       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 1}}),
		"eleven in chain": bytes.Repeat(leaf, 11),
	}
	for name, b := range bad {
		if _, err := acme.ParseCertificateChain(b); !errors.Is(err, acme.ErrMalformedChain) {
			t.Errorf("%s: err = %v, want ErrMalformedChain", name, err)
		}
	}
	if _, err := acme.ParseCertificateChain(bad["a key beside"]); err == nil || !strings.Contains(err.Error(), `"PRIVATE KEY"`) {
		t.Errorf("a key beside the chain: err = %v, want it to name the block", err)
	}
	if certs, err := acme.ParseCertificateChain(bytes.Repeat(leaf, 10)); err != nil || len(certs) != 10 {
		t.Errorf("ten certificates: %d, %v; want all ten", len(certs), err)
	}
}
