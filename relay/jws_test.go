package relay_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/tlsmint/tlsmint/record"
)

// TestBadJWS sends what a hostile or broken client sends and checks that
// each gets the problem type and status Boulder and Pebble give, with a
// fresh nonce, and never a 500.
func TestBadJWS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.registered(t)
	kid := accountURL(t, c)
	key := c.Key
	orderURL := e.ts.URL + "/new-order"
	acctURL := e.ts.URL + "/new-account"
	order := []byte(`{"identifiers":[{"type":"dns","value":"a.example.com"}]}`)
	hdr := func(extra map[string]any) map[string]any {
		h := map[string]any{"alg": "ES256", "nonce": e.nonce(t), "url": orderURL, "kid": kid}
		for k, v := range extra {
			if v == nil {
				delete(h, k)
			} else {
				h[k] = v
			}
		}
		return h
	}
	jws := func(extra map[string]any) []byte { return rawJWS(t, key, hdr(extra), order) }
	other := newKey(t)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	used := e.nonce(t)
	// Use the nonce once, successfully.
	if code, p, _ := e.post(t, orderURL, "application/jose+json", rawJWS(t, key, hdr(map[string]any{"nonce": used}), order)); code != http.StatusCreated {
		t.Fatalf("good request: %d %v", code, p)
	}
	privJWK, _ := (&jose.JSONWebKey{Key: other}).MarshalJSON()

	type tc struct {
		name   string
		url    string
		ct     string
		body   []byte
		kind   string
		status int
	}
	cases := []tc{
		{"no content type", orderURL, "", jws(nil), "malformed", 415},
		{"wrong content type", orderURL, "application/json", jws(nil), "malformed", 415},
		{"oversized body", orderURL, "application/jose+json", bytes.Repeat([]byte("x"), 70<<10), "malformed", 413},
		{"not JSON", orderURL, "application/jose+json", []byte("not json"), "malformed", 400},
		{"empty body", orderURL, "application/jose+json", nil, "malformed", 400},
		{"compact serialization", orderURL, "application/jose+json", compact(t, jws(nil)), "malformed", 400},
		{"general serialization", orderURL, "application/jose+json", general(t, jws(nil)), "malformed", 400},
		{"unprotected header", orderURL, "application/jose+json", withField(t, jws(nil), "header", map[string]any{"kid": kid}), "malformed", 400},
		{"trailing data", orderURL, "application/jose+json", append(jws(nil), []byte(`{}`)...), "malformed", 400},
		{"jwk and kid", orderURL, "application/jose+json", jws(map[string]any{"jwk": jwkJSON(t, key.Public())}), "malformed", 400},
		{"jwk instead of kid", orderURL, "application/jose+json", jws(map[string]any{"kid": nil, "jwk": jwkJSON(t, key.Public())}), "malformed", 400},
		{"kid on newAccount", acctURL, "application/jose+json", rawJWS(t, key, hdr(map[string]any{"url": acctURL}), []byte(`{}`)), "malformed", 400},
		{"neither", orderURL, "application/jose+json", jws(map[string]any{"kid": nil}), "malformed", 400},
		{"unknown kid", orderURL, "application/jose+json", jws(map[string]any{"kid": e.ts.URL + "/acct/aaaaaaaaaaaaaaaaaaaaaaaaaa"}), "accountDoesNotExist", 400},
		{"foreign kid", orderURL, "application/jose+json", jws(map[string]any{"kid": "https://elsewhere.example/acct/1"}), "accountDoesNotExist", 400},
		{"kid of another key", orderURL, "application/jose+json", rawJWS(t, other, hdr(nil), order), "malformed", 400},
		{"alg none", orderURL, "application/jose+json", noneJWS(t, hdr(map[string]any{"alg": "none"}), order), "badSignatureAlgorithm", 400},
		{"alg none, empty signature", orderURL, "application/jose+json", unsignedJWS(t, hdr(map[string]any{"alg": "none"}), order, true), "badSignatureAlgorithm", 400},
		{"alg none, no signature", orderURL, "application/jose+json", unsignedJWS(t, hdr(map[string]any{"alg": "none"}), order, false), "badSignatureAlgorithm", 400},
		{"alg none, new account", acctURL, "application/jose+json", unsignedJWS(t, map[string]any{"alg": "none", "nonce": e.nonce(t), "url": acctURL, "jwk": jwkJSON(t, other.Public())}, []byte(`{}`), true), "badSignatureAlgorithm", 400},
		{"no alg", orderURL, "application/jose+json", jws(map[string]any{"alg": nil}), "malformed", 400},
		{"alg HS256", orderURL, "application/jose+json", jws(map[string]any{"alg": "HS256"}), "badSignatureAlgorithm", 400},
		{"alg of another key type", orderURL, "application/jose+json", jws(map[string]any{"alg": "ES384"}), "malformed", 400},
		{"RS256 header, EC key", orderURL, "application/jose+json", rawJWS(t, rsaKey, hdr(map[string]any{"alg": "RS256"}), order), "malformed", 400},
		{"no nonce", orderURL, "application/jose+json", jws(map[string]any{"nonce": nil}), "badNonce", 400},
		{"unknown nonce", orderURL, "application/jose+json", jws(map[string]any{"nonce": "AAAAAAAAAAAAAAAAAAAAAA"}), "badNonce", 400},
		{"replayed nonce", orderURL, "application/jose+json", jws(map[string]any{"nonce": used}), "badNonce", 400},
		{"no url", orderURL, "application/jose+json", jws(map[string]any{"url": nil}), "malformed", 400},
		{"wrong url", orderURL, "application/jose+json", jws(map[string]any{"url": acctURL}), "malformed", 400},
		{"url with a query", orderURL, "application/jose+json", jws(map[string]any{"url": orderURL + "?x=1"}), "malformed", 400},
		{"crit header", orderURL, "application/jose+json", jws(map[string]any{"crit": []string{"b64"}, "b64": false}), "malformed", 400},
		{"bad signature", orderURL, "application/jose+json", tamper(t, jws(nil)), "malformed", 400},
		{"private jwk", acctURL, "application/jose+json", rawJWS(t, other, map[string]any{"alg": "ES256", "nonce": e.nonce(t), "url": acctURL, "jwk": json.RawMessage(privJWK)}, []byte(`{}`)), "malformed", 400},
		{"payload not an object", orderURL, "application/jose+json", rawJWS(t, key, hdr(nil), []byte(`[1,2]`)), "malformed", 400},
		{"payload not JSON", orderURL, "application/jose+json", rawJWS(t, key, hdr(nil), []byte(`{"identifiers":`)), "malformed", 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, p, h := e.post(t, tc.url, tc.ct, tc.body)
			if p == nil || code != tc.status || p.Type != "urn:ietf:params:acme:error:"+tc.kind {
				t.Fatalf("got %d %v, want %d %s", code, p, tc.status, tc.kind)
			}
			if h.Get("Replay-Nonce") == "" {
				t.Error("no fresh Replay-Nonce on the error")
			}
			if !strings.Contains(h.Get("Link"), `rel="index"`) {
				t.Errorf("Link = %q, want the directory as index", h.Get("Link"))
			}
		})
	}
	t.Run("Replay-Nonce request header", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, orderURL, bytes.NewReader(jws(nil)))
		req.Header.Set("Content-Type", "application/jose+json")
		req.Header.Set("Replay-Nonce", "x")
		resp, err := e.ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Fatalf("got %d, want 400", resp.StatusCode)
		}
	})
	if err := e.log.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// Each kind of refusal is in the trail; those of requests without a
	// valid account once per problem type (from one source network) —
	// sampled, so that a scan does not grow the trail.
	kinds := map[string]bool{}
	unauth := map[string]int{}
	for _, r := range e.records(t, "newOrder") {
		if r.Outcome == record.OutcomeRefused && r.Problem != "" {
			kinds[r.Problem] = true
			if r.Account == "" {
				unauth[r.Problem]++
			}
		}
	}
	for _, tc := range cases {
		if tc.url == orderURL && !kinds["urn:ietf:params:acme:error:"+tc.kind] {
			t.Errorf("no refused newOrder record of %s", tc.kind)
		}
	}
	for p, n := range unauth {
		if n != 1 {
			t.Errorf("%d records of %s refusals without an account, want 1 (sampled)", n, p)
		}
	}
	if n := e.ca.Requests("newOrder"); n != 0 {
		t.Errorf("upstream saw %d newOrders, want none (no order was finalized)", n)
	}
}

// compact turns a flattened JWS into the compact serialization.
func compact(t *testing.T, flat []byte) []byte {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal(flat, &m); err != nil {
		t.Fatal(err)
	}
	return []byte(m["protected"] + "." + m["payload"] + "." + m["signature"])
}

// general turns a flattened JWS into the general serialization.
func general(t *testing.T, flat []byte) []byte {
	t.Helper()
	var m map[string]string
	json.Unmarshal(flat, &m)
	b, _ := json.Marshal(map[string]any{"payload": m["payload"], "signatures": []map[string]string{{"protected": m["protected"], "signature": m["signature"]}}})
	return b
}

func withField(t *testing.T, flat []byte, k string, v any) []byte {
	t.Helper()
	var m map[string]any
	json.Unmarshal(flat, &m)
	m[k] = v
	b, _ := json.Marshal(m)
	return b
}

func tamper(t *testing.T, flat []byte) []byte {
	t.Helper()
	var m map[string]string
	json.Unmarshal(flat, &m)
	sig, _ := b64.DecodeString(m["signature"])
	sig[0] ^= 0xff
	m["signature"] = b64.EncodeToString(sig)
	b, _ := json.Marshal(m)
	return b
}

// unsignedJWS is a JWS without a signature: "signature" empty (empty)
// or missing.
func unsignedJWS(t *testing.T, hdr map[string]any, payload []byte, empty bool) []byte {
	t.Helper()
	h, _ := json.Marshal(hdr)
	m := map[string]string{"protected": b64.EncodeToString(h), "payload": b64.EncodeToString(payload)}
	if empty {
		m["signature"] = ""
	}
	b, _ := json.Marshal(m)
	return b
}

// noneJWS is a JWS of "alg": "none" with a signature.
func noneJWS(t *testing.T, hdr map[string]any, payload []byte) []byte {
	t.Helper()
	h, _ := json.Marshal(hdr)
	b, _ := json.Marshal(map[string]string{"protected": b64.EncodeToString(h), "payload": b64.EncodeToString(payload), "signature": b64.EncodeToString([]byte("x"))})
	return b
}
