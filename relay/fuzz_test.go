package relay

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
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
