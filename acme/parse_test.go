package acme

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name, in string
		want     time.Duration
		ok       bool
	}{
		{"empty", "", 0, false},
		{"seconds", "120", 120 * time.Second, true},
		{"zero is floored", "0", MinRetryAfter, true},
		{"huge is capped", "999999999999", MaxRetryAfter, true},
		{"overflow is capped", "99999999999999999999999999", MaxRetryAfter, true},
		{"date", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{"date in the past is floored", now.Add(-time.Hour).Format(http.TimeFormat), MinRetryAfter, true},
		{"date far ahead is capped", now.Add(72 * time.Hour).Format(http.TimeFormat), MaxRetryAfter, true},
		{"negative", "-5", 0, false},
		{"garbage", "soon", 0, false},
		{"fraction", "1.5", 0, false},
		{"spaces", "  30 ", 30 * time.Second, true},
	}
	for _, tc := range cases {
		got, ok := ParseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: ParseRetryAfter(%q) = %v, %v; want %v, %v", tc.name, tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestProblemIs(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		p      *Problem
		target error
		want   bool
	}{
		{"exact", &Problem{Type: "urn:ietf:params:acme:error:rateLimited"}, ErrRateLimited, true},
		{"case", &Problem{Type: "URN:IETF:PARAMS:ACME:ERROR:RATELIMITED"}, ErrRateLimited, true},
		{"bare", &Problem{Type: "badNonce"}, ErrBadNonce, true},
		{"other namespace", &Problem{Type: "urn:acme:error:malformed"}, ErrMalformed, true},
		{"different", &Problem{Type: "urn:ietf:params:acme:error:malformed"}, ErrRateLimited, false},
		{"compound", &Problem{Type: "urn:ietf:params:acme:error:compound", Subproblems: []Problem{{Type: "urn:ietf:params:acme:error:caa"}}}, ErrCAA, true},
		{"empty type", &Problem{}, ErrMalformed, false},
		{"non-problem target", &Problem{Type: "x"}, errors.New("x"), false},
	}
	for _, tc := range cases {
		if got := errors.Is(fmt.Errorf("wrapped: %w", tc.p), tc.target); got != tc.want {
			t.Errorf("%s: errors.Is = %v, want %v", tc.name, got, tc.want)
		}
	}
	p := &Problem{Type: "urn:ietf:params:acme:error:rejectedIdentifier", Detail: "nope", Status: 400,
		Subproblems: []Problem{{Type: "urn:ietf:params:acme:error:rejectedIdentifier", Detail: "bad", Identifier: &Identifier{Type: "dns", Value: "x.test"}}}}
	if msg := p.Error(); !strings.HasPrefix(msg, "acme: rejectedIdentifier: nope") || !strings.Contains(msg, "x.test") {
		t.Errorf("Error() = %q", msg)
	}
}

func TestProblemFromResponse(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		status     int
		ctype      string
		body       string
		wantStatus int
		wantIs     error
	}{
		{"problem document", 400, "application/problem+json", `{"type":"urn:ietf:params:acme:error:badCSR","detail":"x","status":400}`, 400, ErrBadCSR},
		{"status mismatch uses HTTP status", 403, "application/problem+json", `{"type":"urn:ietf:params:acme:error:unauthorized","status":200}`, 403, ErrUnauthorized},
		{"malformed document", 500, "application/problem+json", `{"type":`, 500, ErrServerInternal},
		{"html", 502, "text/html", `<html>bad gateway</html>`, 502, ErrServerInternal},
		{"rate limit without body", 429, "", ``, 429, ErrRateLimited},
	}
	for _, tc := range cases {
		h := http.Header{}
		h.Set("Content-Type", tc.ctype)
		p := (&response{status: tc.status, header: h, body: []byte(tc.body)}).problem()
		if p.Status != tc.wantStatus || !errors.Is(p, tc.wantIs) {
			t.Errorf("%s: problem = %+v, want status %d matching %v", tc.name, p, tc.wantStatus, tc.wantIs)
		}
	}
}

func TestTLSALPN01Certificate(t *testing.T) {
	t.Parallel()
	for _, id := range []Identifier{{Type: "dns", Value: "example.com"}, {Type: "ip", Value: "127.0.0.1"}, {Type: "ip", Value: "::1"}} {
		ch := Challenge{Type: ChallengeTLSALPN01, Token: "tok", KeyAuthorization: "tok.thumb", Identifier: id}
		cert, err := TLSALPN01Certificate(ch)
		if err != nil {
			t.Fatalf("%v: %v", id, err)
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		sans := len(leaf.DNSNames) + len(leaf.IPAddresses)
		if sans != 1 {
			t.Fatalf("%v: %d SANs, want exactly 1", id, sans)
		}
		var ext *struct {
			critical bool
			value    []byte
		}
		for _, e := range leaf.Extensions {
			if e.Id.Equal(idPeAcmeIdentifier) {
				ext = &struct {
					critical bool
					value    []byte
				}{e.Critical, e.Value}
			}
		}
		if ext == nil || !ext.critical {
			t.Fatalf("%v: acmeIdentifier extension missing or not critical", id)
		}
		var digest []byte
		if _, err := asn1.Unmarshal(ext.value, &digest); err != nil {
			t.Fatal(err)
		}
		want := sha256.Sum256([]byte("tok.thumb"))
		if string(digest) != string(want[:]) {
			t.Fatalf("%v: extension holds %x, want %x", id, digest, want)
		}
	}
	if _, err := TLSALPN01Certificate(Challenge{Identifier: Identifier{Type: "dns", Value: "x"}}); err == nil {
		t.Fatal("certificate without key authorization")
	}
}

func TestLinkURLs(t *testing.T) {
	t.Parallel()
	h := http.Header{}
	h.Add("Link", `<https://ca.example/cert/1/1>;rel="alternate", <https://ca.example/dir>;rel="index"`)
	h.Add("Link", `<https://ca.example/cert/1/2>; rel=alternate`)
	h.Add("Link", `<http://ca.example/cert/1/3>;rel="alternate"`)
	h.Add("Link", `garbage;rel="alternate"`)
	got := linkURLs(&response{header: h}, "alternate")
	want := []string{"https://ca.example/cert/1/1", "https://ca.example/cert/1/2"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("linkURLs = %v, want %v", got, want)
	}
}
