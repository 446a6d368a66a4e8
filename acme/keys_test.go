package acme_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/tlsmint/tlsmint/acme"
)

func TestParsePrivateKey(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	pkcs8EC, _ := x509.MarshalPKCS8PrivateKey(ec)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	pkcs8Ed, _ := x509.MarshalPKCS8PrivateKey(ed)
	for _, tc := range []struct {
		name  string
		block pem.Block
		ok    bool
	}{
		{"PKCS #8 ECDSA", pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8EC}, true},
		{"SEC 1", pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}, true},
		{"PKCS #1", pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}, true},
		{"Ed25519", pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8Ed}, false},
		{"garbage", pem.Block{Type: "PRIVATE KEY", Bytes: []byte("nope")}, false},
	} {
		k, err := acme.ParsePrivateKey(&tc.block)
		if tc.ok != (err == nil) || (tc.ok && k == nil) {
			t.Errorf("%s: got %v, %v", tc.name, k, err)
		}
		if tc.name == "Ed25519" && !errors.Is(err, acme.ErrUnsupportedKey) {
			t.Errorf("Ed25519: got %v, want ErrUnsupportedKey", err)
		}
	}
}
