package solvers

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/tlsmint/tlsmint/acme"
)

// FuzzToken checks that only base64url tokens are accepted, and that an
// accepted token is safe as a path segment and a storage key.
func FuzzToken(f *testing.F) {
	for _, s := range []string{
		"evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", "../../x", "a/b", "%2e%2e", "..", ".", "",
		"abc=", "a b", "a\x00b", "a\nb", strings.Repeat("a", 4096), "é", "_-",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		ok := validToken(tok)
		if ok != (tok != "" && len(tok) <= MaxTokenLen && strings.Trim(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == "") {
			t.Fatalf("validToken(%q) = %v, disagrees with the alphabet", tok, ok)
		}
		if ok && (strings.ContainsAny(tok, "./\\%") || tok == "." || tok == "..") {
			t.Fatalf("validToken(%q) accepted a path-unsafe token", tok)
		}
		err := checkChallenge(acme.Challenge{Type: acme.ChallengeHTTP01, Token: tok, KeyAuthorization: tok + ".thumb"}, acme.ChallengeHTTP01)
		if (err == nil) != ok {
			t.Fatalf("checkChallenge(%q): got %v, want valid=%v", tok, err, ok)
		}
	})
}

// FuzzHost checks Host header matching: it never panics, a match implies
// the host (port and brackets removed) is the identifier, and every
// identifier matches itself with or without a port.
func FuzzHost(f *testing.F) {
	for _, s := range [][2]string{
		{"example.com", "example.com"}, {"EXAMPLE.com:80", "example.com"}, {"example.com.", "example.com"},
		{"[::1]:80", "::1"}, {"[::1", "::1"}, {"::1", "::1"}, {"127.0.0.1:5002", "127.0.0.1"},
		{"example.com:http", "example.com"}, {"evil.com", "example.com"}, {"[::ffff:127.0.0.1]", "127.0.0.1"},
		{"", ""}, {":80", ""}, {"[]:80", "::"}, {"\u212aelvin.example.com", "kelvin.example.com"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, host, idValue string) {
		// Identifiers come normalised from Present.
		idType := acme.IdentifierDNS
		if _, err := netip.ParseAddr(idValue); err == nil {
			idType = acme.IdentifierIP
		}
		id, err := normalizeIdentifier(acme.Identifier{Type: idType, Value: idValue})
		if err != nil {
			return
		}
		if hostMatches(host, id) {
			h, ok := hostOnly(host)
			if !ok {
				t.Fatalf("hostMatches(%q, %q) with a malformed host", host, id)
			}
			// ASCII case only: no Unicode folding may make a host match.
			h = strings.TrimSuffix(strings.Map(func(r rune) rune {
				if 'A' <= r && r <= 'Z' {
					return r + 'a' - 'A'
				}
				return r
			}, h), ".")
			if a, err := netip.ParseAddr(h); err == nil {
				if b := netip.MustParseAddr(id); a.Unmap() != b {
					t.Fatalf("hostMatches(%q, %q): address %v is not %v", host, id, a, b)
				}
			} else if h != id {
				t.Fatalf("hostMatches(%q, %q): host %q is not the identifier", host, id, h)
			}
		}
		self := id
		if strings.Contains(id, ":") {
			self = "[" + id + "]"
		}
		if !hostMatches(id, id) || !hostMatches(self+":443", id) || !hostMatches(strings.ToUpper(self), id) {
			t.Fatalf("identifier %q does not match itself", id)
		}
	})
}
