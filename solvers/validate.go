package solvers

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/textclip"
)

// MaxTokenLen is the longest challenge token, in bytes, that the solvers
// accept. RFC 8555 asks for at least 128 bits of entropy (22 base64url
// characters); CAs use 32 to 64. Anything longer is refused.
const MaxTokenLen = 256

// ErrInvalidToken is returned (wrapped) by Present when a challenge token is
// empty, longer than [MaxTokenLen] or not made only of the base64url
// alphabet without padding (RFC 8555, section 8.1). Such a token is never
// stored or served.
var ErrInvalidToken = errors.New("solvers: invalid challenge token")

// ErrInvalidIdentifier is returned (wrapped) by Present when a challenge's
// identifier is empty, malformed or of a type the solver cannot answer.
var ErrInvalidIdentifier = errors.New("solvers: invalid identifier")

// validToken reports whether tok is a well-formed challenge token: 1 to
// MaxTokenLen characters of the base64url alphabet, no padding.
func validToken(tok string) bool {
	if tok == "" || len(tok) > MaxTokenLen {
		return false
	}
	for i := 0; i < len(tok); i++ {
		if !isB64URL(tok[i]) {
			return false
		}
	}
	return true
}

func isB64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// checkKeyAuthorization checks that ka is token '.' thumbprint with a
// base64url thumbprint.
func checkKeyAuthorization(token, ka string) error {
	if !matchesToken(token, ka) {
		return errors.New("solvers: key authorization does not match the token")
	}
	return nil
}

// matchesToken reports whether ka is token '.' thumbprint with a base64url
// thumbprint. It does not allocate.
func matchesToken(token, ka string) bool {
	n := len(token)
	return len(ka) > n+1 && ka[:n] == token && ka[n] == '.' && validToken(ka[n+1:])
}

// checkChallenge validates the parts of chal that every solver relies on.
func checkChallenge(chal acme.Challenge, typ string) error {
	if chal.Type != typ {
		return fmt.Errorf("solvers: %s solver given a %q challenge", typ, chal.Type)
	}
	if !validToken(chal.Token) {
		return fmt.Errorf("%w: %q", ErrInvalidToken, truncate(chal.Token))
	}
	if err := checkKeyAuthorization(chal.Token, chal.KeyAuthorization); err != nil {
		return err
	}
	return nil
}

// normalizeIdentifier returns the canonical form of an identifier that can
// be compared with a Host header or an SNI name: a lower-case DNS name
// without a trailing dot, or an IP address in netip's canonical form.
func normalizeIdentifier(id acme.Identifier) (string, error) {
	switch id.Type {
	case acme.IdentifierDNS:
		name := strings.ToLower(strings.TrimSuffix(id.Value, "."))
		if !validDNSName(name) {
			return "", fmt.Errorf("%w: DNS name %q", ErrInvalidIdentifier, truncate(id.Value))
		}
		return name, nil
	case acme.IdentifierIP:
		a, err := netip.ParseAddr(id.Value)
		if err != nil || a.Zone() != "" {
			return "", fmt.Errorf("%w: IP address %q", ErrInvalidIdentifier, truncate(id.Value))
		}
		return a.Unmap().String(), nil
	default:
		return "", fmt.Errorf("%w: unsupported type %q", ErrInvalidIdentifier, truncate(id.Type))
	}
}

// validDNSName reports whether name (lower case, no trailing dot) is a
// syntactically valid host name: at most 253 octets, labels of 1 to 63
// letters, digits, hyphens or underscores, not starting or ending with a
// hyphen. Wildcards are refused.
func validDNSName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// hostMatches reports whether the Host header host names the identifier id,
// which is in the form normalizeIdentifier returns. The port, if any, is
// ignored; DNS names are compared ignoring ASCII case and may carry one
// trailing dot; IPv6 addresses must be in brackets when a port follows, and
// are compared as addresses. It never allocates.
func hostMatches(host, id string) bool {
	h, ok := hostOnly(host)
	if !ok || h == "" {
		return false
	}
	if equalFoldASCII(h, id) {
		return true
	}
	if t, ok := strings.CutSuffix(h, "."); ok && equalFoldASCII(t, id) {
		return true
	}
	// Different spellings of the same address ("0:0::1" for "::1").
	if a, err := netip.ParseAddr(h); err == nil && a.Zone() == "" {
		if b, err := netip.ParseAddr(id); err == nil {
			return a.Unmap() == b
		}
	}
	return false
}

// equalFoldASCII reports whether a and b are equal but for the case of
// ASCII letters. Unlike strings.EqualFold it folds no other character: the
// Kelvin sign "\u212a" does not match "k".
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// hostOnly strips the port from a Host header value and the brackets from
// an IPv6 literal. It reports false for malformed values: an unbalanced
// bracket, a non-numeric port, or an IPv6 address with a port but no
// brackets.
func hostOnly(host string) (string, bool) {
	if strings.HasPrefix(host, "[") {
		end := strings.IndexByte(host, ']')
		if end < 0 {
			return "", false
		}
		if rest := host[end+1:]; rest != "" && !isPort(rest) {
			return "", false
		}
		return host[1:end], true
	}
	switch strings.Count(host, ":") {
	case 0:
		return host, true
	case 1:
		i := strings.IndexByte(host, ':')
		if !isPort(host[i:]) {
			return "", false
		}
		return host[:i], true
	default:
		// A bare IPv6 address, without a port.
		return host, strings.IndexByte(host, ']') < 0
	}
}

// isPort reports whether s is ":" followed by 1 to 5 digits.
func isPort(s string) bool {
	if len(s) < 2 || len(s) > 6 || s[0] != ':' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// truncate shortens untrusted strings before they go into error messages.
func truncate(s string) string {
	return textclip.Ellipsis(s, 64)
}
