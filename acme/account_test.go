package acme_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
)

func TestDirectory(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	c := newClient(t, ca)
	d, err := c.Directory(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if d.NewNonce == "" || d.NewAccount == "" || d.NewOrder == "" || d.RevokeCert == "" || d.KeyChange == "" || d.RenewalInfo == "" {
		t.Fatalf("directory misses endpoints: %+v", d)
	}
	if d.Meta.TermsOfService == "" || len(d.Meta.Profiles) == 0 {
		t.Fatalf("directory meta = %+v, want terms of service and profiles", d.Meta)
	}
	// Fetched once.
	if _, err := c.Directory(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if got := ca.Requests("directory"); got != 1 {
		t.Fatalf("directory fetched %d times, want 1", got)
	}
}

func TestAccountLifecycle(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	c := newClient(t, ca)
	ctx := ctxT(t)

	// No account yet.
	_, err := c.LookupAccount(ctx)
	wantIs(t, err, acme.ErrAccountDoesNotExist)

	acct, err := c.Register(ctx, acme.Account{TermsOfServiceAgreed: true, Contact: []string{"mailto:a@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if acct.URL == "" || acct.Status != acme.StatusValid {
		t.Fatalf("account = %+v, want valid with URL", acct)
	}
	// Registering again returns the same account.
	again, err := c.Register(ctx, acme.Account{TermsOfServiceAgreed: true})
	if err != nil || again.URL != acct.URL {
		t.Fatalf("second Register = %v, %v; want the same account %s", again, err, acct.URL)
	}
	found, err := (&acme.Client{DirectoryURL: c.DirectoryURL, Key: c.Key, HTTPClient: c.HTTPClient}).LookupAccount(ctx)
	if err != nil || found.URL != acct.URL {
		t.Fatalf("LookupAccount = %v, %v; want %s", found, err, acct.URL)
	}
	upd, err := c.UpdateAccount(ctx, acme.Account{Contact: []string{"mailto:b@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(upd.Contact) != 1 || upd.Contact[0] != "mailto:b@example.com" {
		t.Fatalf("contacts after update = %v", upd.Contact)
	}
	got, err := c.GetAccount(ctx)
	if err != nil || got.Contact[0] != "mailto:b@example.com" {
		t.Fatalf("GetAccount = %v, %v", got, err)
	}
	deact, err := c.DeactivateAccount(ctx)
	if err != nil || deact.Status != acme.StatusDeactivated {
		t.Fatalf("DeactivateAccount = %+v, %v", deact, err)
	}
	// A deactivated account can do nothing.
	_, err = c.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("x.example.com")})
	wantIs(t, err, acme.ErrUnauthorized)
}

func TestNoAccount(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	c := newClient(t, ca)
	_, err := c.NewOrder(ctxT(t), acme.OrderRequest{Identifiers: acme.DNSNames("x.example.com")})
	wantIs(t, err, acme.ErrNoAccount)
}

func TestUnsupportedKeysRefusedBeforeAnyRequest(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	for name, key := range map[string]crypto.Signer{"ed25519": edKey, "P-224": p224, "RSA-1024": rsa1024} {
		c := &acme.Client{DirectoryURL: ca.DirectoryURL(), Key: key, HTTPClient: ca.HTTPClient()}
		_, err := c.Register(ctxT(t), acme.Account{TermsOfServiceAgreed: true})
		if err == nil {
			t.Errorf("%s: Register succeeded", name)
			continue
		}
		wantIs(t, err, acme.ErrUnsupportedKey)
	}
	if got := ca.Requests("newAccount") + ca.Requests("newNonce"); got != 0 {
		t.Fatalf("%d account/nonce requests with unsupported keys, want 0", got)
	}
}

func TestRegisterKeyTypes(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, c := range []*acme.Client{
		{DirectoryURL: ca.DirectoryURL(), Key: p384, HTTPClient: ca.HTTPClient()},
		{DirectoryURL: ca.DirectoryURL(), Key: rsa2048, HTTPClient: ca.HTTPClient()},
	} {
		if _, err := c.Register(ctxT(t), acme.Account{TermsOfServiceAgreed: true}); err != nil {
			t.Fatalf("Register with %T: %v", c.Key, err)
		}
		if _, err := c.GetAccount(ctxT(t)); err != nil {
			t.Fatalf("GetAccount with %T: %v", c.Key, err)
		}
	}
}

func TestExternalAccountBinding(t *testing.T) {
	t.Parallel()
	macKey := base64.RawURLEncoding.EncodeToString([]byte("a secret MAC key of 32 bytes....."))
	ca := newCA(t, testpebble.Options{RequireEAB: true, EABKeys: map[string]string{"kid-1": macKey}})
	good, err := acme.DecodeEABKey(macKey)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		eab     *acme.ExternalAccountBinding
		wantErr error
	}{
		{"missing", nil, acme.ErrExternalAccountRequired},
		{"wrong MAC", &acme.ExternalAccountBinding{KeyID: "kid-1", HMACKey: []byte("not the right key, but 32+ bytes long")}, acme.ErrUnauthorized},
		{"unknown key id", &acme.ExternalAccountBinding{KeyID: "kid-2", HMACKey: good}, acme.ErrUnauthorized},
		{"correct", &acme.ExternalAccountBinding{KeyID: "kid-1", HMACKey: good}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, ca)
			before := ca.Requests("newAccount")
			acct, err := c.Register(ctxT(t), acme.Account{TermsOfServiceAgreed: true, ExternalAccountBinding: tc.eab})
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Register: %v", err)
				}
				if acct.URL == "" {
					t.Fatal("no account URL")
				}
				return
			}
			if err == nil {
				t.Fatalf("Register succeeded, want %v", tc.wantErr)
			}
			if tc.eab == nil {
				wantIs(t, err, tc.wantErr)
				if got := ca.Requests("newAccount"); got != before {
					t.Fatalf("a missing EAB still sent newAccount")
				}
				return
			}
			// Pebble reports EAB failures as unauthorized or malformed.
			if !errorsIsAny(err, acme.ErrUnauthorized, acme.ErrMalformed) {
				t.Fatalf("got %v, want unauthorized or malformed", err)
			}
		})
	}
}

func errorsIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

func TestRolloverKey(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	c := registered(t, ca)
	ctx := ctxT(t)
	oldKey := c.Key
	acct, _ := c.GetAccount(ctx)
	newK := newKey(t)
	if err := c.RolloverKey(ctx, newK); err != nil {
		t.Fatalf("RolloverKey: %v", err)
	}
	// The client now signs with the new key.
	if _, err := c.GetAccount(ctx); err != nil {
		t.Fatalf("GetAccount after rollover: %v", err)
	}
	// The new key finds the account; the old one is refused.
	byNew := &acme.Client{DirectoryURL: ca.DirectoryURL(), Key: newK, HTTPClient: ca.HTTPClient()}
	found, err := byNew.LookupAccount(ctx)
	if err != nil || found.URL != acct.URL {
		t.Fatalf("lookup by new key = %v, %v; want %s", found, err, acct.URL)
	}
	byOld := &acme.Client{DirectoryURL: ca.DirectoryURL(), Key: oldKey, HTTPClient: ca.HTTPClient()}
	_, err = byOld.LookupAccount(ctx)
	wantIs(t, err, acme.ErrAccountDoesNotExist)
	byOldKid := &acme.Client{DirectoryURL: ca.DirectoryURL(), Key: oldKey, HTTPClient: ca.HTTPClient(), AccountURL: acct.URL}
	if _, err := byOldKid.GetAccount(ctx); err == nil {
		t.Fatal("the old key still signs for the account")
	}
}
