package relay

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/storage"
)

// FuzzParseJWS feeds arbitrary bodies to the JWS parser and the key
// checks: they must return a problem or a JWS with one signature, never
// panic.
func FuzzParseJWS(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	opts := (&jose.SignerOptions{EmbedJWK: true}).WithHeader("url", "https://r.example/new-account").WithHeader("nonce", "AAAAAAAAAAAAAAAAAAAAAA")
	s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, opts)
	sig, _ := s.Sign([]byte(`{"termsOfServiceAgreed":true}`))
	good := sig.FullSerialize()
	for _, seed := range []string{
		good, "", "{}", "null", `{"protected":"","payload":"","signature":""}`,
		`{"protected":"e30","payload":"","signature":"AA"}`,
		`{"protected":"eyJhbGciOiJub25lIn0","payload":"","signature":""}`,
		`{"signatures":[]}`, `{"header":{}}`, "a.b.c",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		jws, hdr, p := parseJWS(body, signatureAlgorithms)
		if p != nil {
			if p.Type == "" || p.Status == 0 {
				t.Fatalf("problem without type or status: %+v", p)
			}
			return
		}
		if len(jws.Signatures) != 1 || hdr == nil {
			t.Fatalf("accepted a JWS with %d signatures", len(jws.Signatures))
		}
		if k := jws.Signatures[0].Protected.JSONWebKey; k != nil {
			if _, p := keyAlgorithm(k); p == nil {
				jws.Verify(k)
			}
		}
		parseJWS(body, eabAlgorithms)
	})
}

// FuzzParseCSR feeds arbitrary DER to finalize's CSR checks: a problem or
// the CSR accepted for exactly the order's names, never a panic.
func FuzzParseCSR(f *testing.F) {
	s := &Server{Storage: storage.NewMemory()}
	s.init()
	ids := []acme.Identifier{{Type: acme.IdentifierDNS, Value: "a.example.com"}, {Type: acme.IdentifierIP, Value: "192.0.2.1"}}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good, _ := acme.CSR(key, ids)
	other, _ := acme.CSR(key, ids[:1])
	for _, seed := range [][]byte{good, other, {}, {0x30, 0x00}, []byte("not DER")} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		c := &call{s: s, ctx: context.Background()}
		o := &orderRecord{Identifiers: ids}
		got, p := c.parseCSR(base64.RawURLEncoding.EncodeToString(der), o, &Policy{})
		if p != nil {
			if p.Type != problemNS+probBadCSR {
				t.Fatalf("problem %s, want badCSR", p.Type)
			}
			return
		}
		csr, err := x509.ParseCertificateRequest(got)
		if err != nil || len(csr.DNSNames) == 0 || len(csr.IPAddresses) == 0 {
			t.Fatalf("accepted a CSR without the order's names: %v", err)
		}
	})
}
