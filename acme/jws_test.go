package acme_test

import (
	"crypto/rsa"
	"encoding/base64"
	"math/big"
	"testing"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// TestManySignatures sends hundreds of ES256-signed requests: a signer that
// does not left-pad r and s to 32 bytes fails about once in 128.
func TestManySignatures(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	c := registered(t, ca)
	ctx := ctxT(t)
	for i := range 300 {
		if _, err := c.GetAccount(ctx); err != nil {
			t.Fatalf("signature %d refused: %v", i, err)
		}
	}
	// One nonce fetch in all: every response refills the pool.
	if got := ca.Requests("newNonce"); got != 1 {
		t.Fatalf("%d newNonce requests for 301 POSTs, want 1", got)
	}
}

func TestThumbprintRFC7638(t *testing.T) {
	t.Parallel()
	// RFC 7638, section 3.1.
	n, _ := base64.RawURLEncoding.DecodeString("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537}
	got, err := acme.Thumbprint(pub)
	if err != nil {
		t.Fatal(err)
	}
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; got != want {
		t.Fatalf("thumbprint = %q, want %q", got, want)
	}
}

func TestKeyAuthorizationFormat(t *testing.T) {
	t.Parallel()
	c := &acme.Client{Key: newKey(t)}
	tp, _ := acme.Thumbprint(c.Key.Public())
	ka, err := c.KeyAuthorization("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA")
	if err != nil {
		t.Fatal(err)
	}
	// RFC 8555, section 8.1: keyAuthorization = token || '.' || base64url(Thumbprint(accountKey)).
	if want := "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA." + tp; ka != want {
		t.Fatalf("key authorization = %q, want %q", ka, want)
	}
	ch := acme.Challenge{Token: "tok", KeyAuthorization: ka, Identifier: acme.Identifier{Type: "dns", Value: "example.com"}, Wildcard: true}
	if got := ch.HTTP01ResourcePath(); got != "/.well-known/acme-challenge/tok" {
		t.Errorf("HTTP01ResourcePath = %q", got)
	}
	if got := ch.DNS01TXTRecordName(); got != "_acme-challenge.example.com" {
		t.Errorf("DNS01TXTRecordName = %q", got)
	}
	if len(ch.DNS01TXTValue()) != 43 {
		t.Errorf("DNS01TXTValue %q is not 43 base64url characters", ch.DNS01TXTValue())
	}
}
