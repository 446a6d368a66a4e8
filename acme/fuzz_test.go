package acme

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

func FuzzProblem(f *testing.F) {
	f.Add(`{"type":"urn:ietf:params:acme:error:rateLimited","detail":"x","status":429}`, 429, "application/problem+json")
	f.Add(`{"type":"urn:ietf:params:acme:error:compound","subproblems":[{"type":"caa","identifier":{"type":"dns","value":"a"}}]}`, 403, "application/problem+json")
	f.Add(`<html>`, 502, "text/html")
	f.Add(`{"subproblems":[null,{}]}`, 400, "application/json")
	f.Fuzz(func(t *testing.T, body string, status int, ctype string) {
		h := http.Header{}
		h.Set("Content-Type", ctype)
		p := (&response{status: status, header: h, body: []byte(body)}).problem()
		_ = p.Error()
		_ = p.LogValue()
		_ = p.Is(ErrRateLimited)
		if p.Status != status {
			t.Fatalf("status %d, want %d", p.Status, status)
		}
	})
}

func FuzzDirectory(f *testing.F) {
	f.Add(`{"newNonce":"https://a/n","newAccount":"https://a/a","newOrder":"https://a/o","meta":{"profiles":{"x":"y"}}}`)
	f.Add(`{"newNonce":"http://a/n","newAccount":"https://a/a","newOrder":"https://a/o"}`)
	f.Add(`{}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, body string) {
		d, err := parseDirectory([]byte(body))
		if err != nil {
			return
		}
		for _, u := range []string{d.NewNonce, d.NewAccount, d.NewOrder} {
			if checkURL(u) != nil {
				t.Fatalf("accepted directory with insecure URL %q", u)
			}
		}
	})
}

func FuzzOrder(f *testing.F) {
	f.Add(`{"status":"pending","identifiers":[{"type":"dns","value":"a"}],"authorizations":["https://a/z/1"],"finalize":"https://a/f"}`)
	f.Add(`{"status":"valid","certificate":"https://a/c","expires":"2026-01-01T00:00:00Z","error":{"type":"x"}}`)
	f.Add(`{"status":"bogus"}`)
	f.Add(`{"status":"pending","notBefore":"yesterday"}`)
	f.Fuzz(func(t *testing.T, body string) {
		o, err := parseOrder(&response{body: []byte(body), header: http.Header{}}, "https://a/o/1")
		if err != nil {
			return
		}
		for _, u := range o.Authorizations {
			if checkURL(u) != nil {
				t.Fatalf("accepted order with insecure authorization URL %q", u)
			}
		}
		if _, err := json.Marshal(o); err != nil {
			t.Fatalf("order does not re-encode: %v", err)
		}
	})
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "120", "-1", "Wed, 21 Oct 2026 07:28:00 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "99999999999999999999", ""} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := ParseRetryAfter(v, now)
		if !ok {
			if d != 0 {
				t.Fatalf("not ok but %v", d)
			}
			return
		}
		if d < MinRetryAfter || d > MaxRetryAfter {
			t.Fatalf("ParseRetryAfter(%q) = %v, outside the bounds", v, d)
		}
	})
}

func FuzzPEMChain(f *testing.F) {
	f.Add("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		certs, err := ParseCertificateChain([]byte(s))
		if err == nil && (len(certs) == 0 || len(certs) > maxChainLen) {
			t.Fatalf("accepted a chain of %d certificates", len(certs))
		}
	})
}

func FuzzAuthorization(f *testing.F) {
	f.Add(`{"status":"pending","identifier":{"type":"dns","value":"*.a.example"},"challenges":[{"type":"dns-01","url":"https://a/c/1","status":"pending","token":"abc"}]}`)
	f.Add(`{"status":"pending","identifier":{"type":"dns","value":"a.example"},"challenges":[{"type":"dns-persist-01","url":"https://a/c/2","status":"pending","issuer-domain-names":["ca.example"],"accounturi":"https://a/acct/1"}]}`)
	f.Add(`{"status":"pending","identifier":{"type":"dns","value":"a.example"},"challenges":[{"type":"x-99","token":7},{"type":null},1,"s",null]}`)
	f.Add(`{"identifier":{},"challenges":{}}`)
	c := &Client{AccountURL: "https://a/acct/1"}
	f.Fuzz(func(t *testing.T, body string) {
		a, err := c.parseAuthorization(&response{body: []byte(body), header: http.Header{}}, "https://a/z/1")
		if err != nil {
			return
		}
		if a.Identifier.Value == "" {
			t.Fatal("accepted an authorization without an identifier")
		}
		for _, ch := range a.Challenges {
			if checkURL(ch.URL) != nil {
				t.Fatalf("kept a challenge with insecure URL %q", ch.URL)
			}
			if ch.AccountURI == "" {
				t.Fatalf("challenge %q without an account URI", ch.Type)
			}
			_ = answerable(ch)
		}
	})
}
