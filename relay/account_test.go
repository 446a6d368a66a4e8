package relay_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/relay"
)

func TestDirectoryAndNonces(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{modify: func(s *relay.Server) {
		s.Profiles = map[string]string{"tlsserver": "90 days", "shortlived": "6 days"}
		s.TermsOfService = "https://relay.example/tos"
	}})
	c := e.client(t)
	dir, err := c.Directory(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for name, u := range map[string]string{"newNonce": dir.NewNonce, "newAccount": dir.NewAccount, "newOrder": dir.NewOrder, "revokeCert": dir.RevokeCert, "keyChange": dir.KeyChange, "renewalInfo": dir.RenewalInfo} {
		if u != e.ts.URL+map[string]string{"newNonce": "/new-nonce", "newAccount": "/new-account", "newOrder": "/new-order", "revokeCert": "/revoke-cert", "keyChange": "/key-change", "renewalInfo": "/renewal-info"}[name] {
			t.Errorf("directory %s = %q", name, u)
		}
	}
	if !dir.Meta.ExternalAccountRequired || dir.Meta.TermsOfService != "https://relay.example/tos" || len(dir.Meta.Profiles) != 2 {
		t.Errorf("meta = %+v, want EAB required, the terms and two profiles", dir.Meta)
	}
	for _, m := range []string{http.MethodHead, http.MethodGet} {
		req, _ := http.NewRequest(m, dir.NewNonce, nil)
		resp, err := e.ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := map[string]int{http.MethodHead: 200, http.MethodGet: 204}[m]
		if resp.StatusCode != want || len(resp.Header.Get("Replay-Nonce")) < 16 || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s new-nonce: %d, nonce %q, cache %q; want %d, a nonce, no-store", m, resp.StatusCode, resp.Header.Get("Replay-Nonce"), resp.Header.Get("Cache-Control"), want)
		}
	}
	if st, p, _ := e.post(t, e.ts.URL+"/directory", "application/jose+json", []byte("{}")); st != http.StatusMethodNotAllowed || p == nil || p.Type != "urn:ietf:params:acme:error:malformed" {
		t.Errorf("POST directory: %d %v, want 405 malformed", st, p)
	}
	if st, p, _ := e.post(t, e.ts.URL+"/nowhere", "application/jose+json", []byte("{}")); st != http.StatusNotFound || p == nil {
		t.Errorf("POST /nowhere: %d %v, want 404", st, p)
	}
}

func TestAccountLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	eab := e.tenant(t, "team", examplePolicy())
	c := e.client(t)
	ctx := ctxT(t)

	if _, err := c.LookupAccount(ctx); !errors.Is(err, acme.ErrAccountDoesNotExist) {
		t.Fatalf("LookupAccount before registering: %v, want accountDoesNotExist", err)
	}
	acct, err := c.Register(ctx, acme.Account{Contact: []string{"mailto:a@example.com"}, ExternalAccountBinding: eab})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if acct.Status != acme.StatusValid || acct.URL == "" || acct.Orders != acct.URL+"/orders" {
		t.Fatalf("account = %+v", acct)
	}
	again, err := c.Register(ctx, acme.Account{ExternalAccountBinding: eab})
	if err != nil || again.URL != acct.URL {
		t.Fatalf("second Register: %v, %v; want the same account %s", again, err, acct.URL)
	}
	found, err := c.LookupAccount(ctx)
	if err != nil || found.URL != acct.URL {
		t.Fatalf("LookupAccount: %v, %v", found, err)
	}
	upd, err := c.UpdateAccount(ctx, acme.Account{Contact: []string{"mailto:b@example.com"}})
	if err != nil || len(upd.Contact) != 1 || upd.Contact[0] != "mailto:b@example.com" {
		t.Fatalf("UpdateAccount: %+v, %v", upd, err)
	}
	if _, err := c.UpdateAccount(ctx, acme.Account{Contact: []string{"tel:+1555"}}); !errors.Is(err, acme.ErrUnsupportedContact) {
		t.Fatalf("tel: contact: %v, want unsupportedContact", err)
	}
	if _, err := c.UpdateAccount(ctx, acme.Account{Contact: []string{"mailto:not an address"}}); !errors.Is(err, acme.ErrInvalidContact) {
		t.Fatalf("bad mailto: %v, want invalidContact", err)
	}
	list, err := c.ListOrders(ctx, acct)
	if err != nil || len(list) != 0 {
		t.Fatalf("ListOrders: %v, %v; want none", list, err)
	}

	// Key rollover: the new key signs, the old one no longer finds the account.
	oldKey := c.Key
	newKey := newKey(t)
	if err := c.RolloverKey(ctx, newKey); err != nil {
		t.Fatalf("RolloverKey: %v", err)
	}
	if got, err := c.GetAccount(ctx); err != nil || got.URL != acct.URL {
		t.Fatalf("GetAccount with the new key: %v, %v", got, err)
	}
	old := e.client(t)
	old.Key = oldKey
	if _, err := old.LookupAccount(ctx); !errors.Is(err, acme.ErrAccountDoesNotExist) {
		t.Fatalf("old key after rollover: %v, want accountDoesNotExist", err)
	}
	fresh := e.client(t)
	fresh.Key = newKey
	if got, err := fresh.LookupAccount(ctx); err != nil || got.URL != acct.URL {
		t.Fatalf("new key looks up %v, %v; want %s", got, err, acct.URL)
	}
	// Rolling over to a key of another account is a conflict.
	other := e.registered(t)
	code, p, hdr := e.keyChange(t, c, newKey, other.Key.(*ecdsa.PrivateKey), acct.URL)
	if code != http.StatusConflict || p == nil || hdr.Get("Location") != accountURL(t, other) {
		t.Fatalf("rollover to another account's key: %d %v Location %q; want 409 with that account", code, p, hdr.Get("Location"))
	}

	// Deactivation: every later request is refused.
	if got, err := c.DeactivateAccount(ctx); err != nil || got.Status != acme.StatusDeactivated {
		t.Fatalf("DeactivateAccount: %v, %v", got, err)
	}
	if _, err := c.GetAccount(ctx); !errors.Is(err, acme.ErrUnauthorized) {
		t.Fatalf("GetAccount after deactivation: %v, want unauthorized", err)
	}
	if _, err := c.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("a.example.com")}); !errors.Is(err, acme.ErrUnauthorized) {
		t.Fatalf("NewOrder after deactivation: %v, want unauthorized", err)
	}
	if _, err := fresh.LookupAccount(ctx); !errors.Is(err, acme.ErrUnauthorized) {
		t.Fatalf("LookupAccount after deactivation: %v, want unauthorized", err)
	}
	if err := e.log.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var created, refused int
	for _, r := range e.records(t, "newAccount") {
		switch {
		case r.Outcome == record.OutcomeOK && r.Tenant == "team" && r.Account == acct.URL:
			created++
		case r.Outcome == record.OutcomeRefused && r.Problem == acme.ErrAccountDoesNotExist.Type:
			refused++
		}
	}
	// The two look-ups of keys without an account carry no valid
	// account: the trail keeps a sample, the first.
	if created != 1 || refused != 1 {
		t.Fatalf("newAccount audit records: %d created, %d refused lookups; want 1 and 1 (sampled)", created, refused)
	}
	if recs := e.records(t, "deactivateAccount"); len(recs) != 1 {
		t.Fatalf("deactivateAccount audit records = %+v, want one", recs)
	}
}

// keyChange sends a keyChange for acct signed by c's current key (cur)
// with newKey as the new key.
func (e *env) keyChange(t *testing.T, c *acme.Client, cur *ecdsa.PrivateKey, newKey *ecdsa.PrivateKey, acct string) (int, *acme.Problem, http.Header) {
	t.Helper()
	url := e.ts.URL + "/key-change"
	inner, _ := json.Marshal(map[string]any{"account": acct, "oldKey": jwkJSON(t, cur.Public())})
	innerJWS := rawJWS(t, newKey, map[string]any{"alg": "ES256", "jwk": jwkJSON(t, newKey.Public()), "url": url}, inner)
	return e.signedPost(t, cur, acct, url, innerJWS)
}

func TestEABRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	eab := e.tenant(t, "team", examplePolicy())
	url := e.ts.URL + "/new-account"
	key := newKey(t)
	eabJWS := func(kid string, mac []byte, bound *ecdsa.PrivateKey, u string, extra map[string]any) json.RawMessage {
		hdr := map[string]any{"alg": "HS256", "kid": kid, "url": u}
		for k, v := range extra {
			hdr[k] = v
		}
		h, _ := json.Marshal(hdr)
		payload := jwkJSON(t, bound.Public())
		input := b64.EncodeToString(h) + "." + b64.EncodeToString(payload)
		sig := hmacSHA256(mac, []byte(input))
		out, _ := json.Marshal(map[string]string{"protected": b64.EncodeToString(h), "payload": b64.EncodeToString(payload), "signature": b64.EncodeToString(sig)})
		return out
	}
	body := func(eab json.RawMessage) []byte {
		m := map[string]any{"termsOfServiceAgreed": true}
		if eab != nil {
			m["externalAccountBinding"] = eab
		}
		b, _ := json.Marshal(m)
		return b
	}
	other := newKey(t)
	for _, tc := range []struct {
		name   string
		eab    json.RawMessage
		kind   string
		status int
	}{
		{"none", nil, "externalAccountRequired", 400},
		{"unknown key", eabJWS("aaaaaaaaaaaaaaaaaaaaaaaaaa", eab.HMACKey, key, url, nil), "unauthorized", 403},
		{"wrong MAC", eabJWS(eab.KeyID, []byte("not the key"), key, url, nil), "unauthorized", 403},
		{"bound to another key", eabJWS(eab.KeyID, eab.HMACKey, other, url, nil), "malformed", 400},
		{"wrong url", eabJWS(eab.KeyID, eab.HMACKey, key, e.ts.URL+"/new-order", nil), "malformed", 400},
		{"with a nonce", eabJWS(eab.KeyID, eab.HMACKey, key, url, map[string]any{"nonce": "x"}), "malformed", 400},
		{"not a JWS", json.RawMessage(`"eab"`), "malformed", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, p, _ := e.signedPost(t, key, "", url, body(tc.eab))
			if p == nil || code != tc.status || p.Type != "urn:ietf:params:acme:error:"+tc.kind {
				t.Fatalf("got %d %v, want %d %s", code, p, tc.status, tc.kind)
			}
		})
	}
	// And the good one, once the others failed.
	if code, p, hdr := e.signedPost(t, key, "", url, body(eabJWS(eab.KeyID, eab.HMACKey, key, url, nil))); code != http.StatusCreated || hdr.Get("Location") == "" {
		t.Fatalf("good EAB: %d %v", code, p)
	}
	// A deleted EAB key registers nothing more; a deleted tenant's accounts are refused.
	if err := e.srv.DeleteEABKey(ctxT(t), eab.KeyID); err != nil {
		t.Fatal(err)
	}
	k2 := newKey(t)
	if code, p, _ := e.signedPost(t, k2, "", url, body(eabJWS(eab.KeyID, eab.HMACKey, k2, url, nil))); code != 403 || p.Type != "urn:ietf:params:acme:error:unauthorized" {
		t.Fatalf("deleted EAB key: %d %v, want 403 unauthorized", code, p)
	}
	c := e.registered(t)
	if err := e.srv.DeleteTenant(ctxT(t), "team"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetAccount(ctxT(t)); !errors.Is(err, acme.ErrUnauthorized) {
		t.Fatalf("account of a deleted tenant: %v, want unauthorized", err)
	}
}

func TestAnonymousAccounts(t *testing.T) {
	t.Parallel()
	pol := examplePolicy()
	e := newEnv(t, envOptions{modify: func(s *relay.Server) { s.Anonymous = &pol; s.TermsOfService = "https://relay.example/tos" }})
	c := e.client(t)
	if _, err := c.Register(ctxT(t), acme.Account{}); !errors.Is(err, acme.ErrTermsNotAgreed) {
		t.Fatalf("Register without agreeing: %v", err)
	}
	// Sent anyway, without agreeing: refused by the relay.
	code, p, _ := e.signedPost(t, newKey(t), "", e.ts.URL+"/new-account", []byte(`{}`))
	if code != 400 || p.Type != "urn:ietf:params:acme:error:malformed" || !hasWord(p.Detail, "terms") {
		t.Fatalf("no terms agreement: %d %v", code, p)
	}
	if _, err := c.Register(ctxT(t), acme.Account{TermsOfServiceAgreed: true}); err != nil {
		t.Fatalf("anonymous Register: %v", err)
	}
}

func TestAccountKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []crypto.Signer{p384, rsa2048} {
		eab := e.tenant(t, "team", examplePolicy())
		c := e.client(t)
		c.Key = key
		if _, err := c.Register(ctxT(t), acme.Account{ExternalAccountBinding: eab}); err != nil {
			t.Fatalf("Register with a %T: %v", key.Public(), err)
		}
		if _, err := c.GetAccount(ctxT(t)); err != nil {
			t.Fatalf("GetAccount with a %T: %v", key.Public(), err)
		}
	}
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	for name, key := range map[string]crypto.Signer{"RSA 1024": rsa1024, "P-521": p521} {
		hdr := map[string]any{"alg": "RS256", "nonce": e.nonce(t), "url": e.ts.URL + "/new-account", "jwk": jwkJSON(t, key.Public())}
		if name == "P-521" {
			hdr["alg"] = "ES512"
		}
		code, p, _ := e.post(t, e.ts.URL+"/new-account", "application/jose+json", rawJWS(t, key, hdr, []byte(`{}`)))
		if p == nil || code != 400 || (p.Type != "urn:ietf:params:acme:error:badPublicKey" && p.Type != "urn:ietf:params:acme:error:badSignatureAlgorithm") {
			t.Errorf("%s account key: %d %v, want 400 badPublicKey or badSignatureAlgorithm", name, code, p)
		}
	}
}

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}
