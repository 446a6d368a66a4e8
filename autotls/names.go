package autotls

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/tlsmint/tlsmint/internal/textclip"
	"golang.org/x/net/idna"
)

// ErrInvalidName is returned (wrapped) for a server name that is not a
// valid host name: it never reaches storage or the CA.
var ErrInvalidName = errors.New("autotls: invalid server name")

const (
	maxNameLen  = 253
	maxLabelLen = 63
)

// idnaProfile converts Unicode names to ASCII the way browsers look them up,
// and checks the result.
var idnaProfile = idna.New(
	idna.MapForLookup(),
	idna.Transitional(false),
	idna.BidiRule(),
	idna.ValidateLabels(true),
	idna.StrictDomainName(true),
	idna.VerifyDNSLength(true),
)

// isNormalHost reports whether name is already in normal form — lower-case
// ASCII letters, digits, '-' and '.', at least two valid labels, no
// trailing dot — so
// that the hot path can use it as is, without allocating.
func isNormalHost(name string) bool {
	if len(name) == 0 || len(name) > maxNameLen {
		return false
	}
	label, dots := 0, 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			label++
		case c == '-':
			if label == 0 || i+1 == len(name) || name[i+1] == '.' {
				return false
			}
			label++
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
			dots++
			continue
		default:
			return false
		}
		if label > maxLabelLen {
			return false
		}
	}
	return label > 0 && dots > 0
}

// NormalizeName returns the canonical form of a server name as it is cached,
// stored and ordered: IDNA to ASCII (punycode), lower case, no trailing dot.
// It returns an error wrapping [ErrInvalidName] for anything that is not a
// valid DNS host name: empty, too long, empty or over-long labels, or
// characters such as '/', '\', NUL, '*', '_' or spaces. IP addresses are
// not host names and are refused too; see [Manager.AllowIPCertificates].
func NormalizeName(name string) (string, error) {
	if isNormalHost(name) {
		if isIPv4(name) {
			return "", fmt.Errorf("%w: %q is an IP address", ErrInvalidName, name)
		}
		return name, nil
	}
	if name == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalidName)
	}
	if len(name) > 4*maxNameLen {
		return "", fmt.Errorf("%w: %d bytes long", ErrInvalidName, len(name))
	}
	n := strings.TrimSuffix(name, ".")
	for i := 0; i < len(n); i++ {
		switch c := n[i]; {
		case c < 0x21 || c == 0x7f, c == '/', c == '\\', c == '*', c == '_', c == '%', c == ':', c == '@':
			return "", fmt.Errorf("%w: %q contains %q", ErrInvalidName, clip(name), c)
		}
	}
	a, err := idnaProfile.ToASCII(n)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrInvalidName, clip(name), err)
	}
	a = strings.ToLower(a)
	if !strings.Contains(a, ".") {
		// Single-label names (localhost, intranet names) cannot get a
		// publicly trusted certificate; refuse them at the edge.
		return "", fmt.Errorf("%w: %q has a single label", ErrInvalidName, clip(name))
	}
	if !isNormalHost(a) {
		return "", fmt.Errorf("%w: %q", ErrInvalidName, clip(name))
	}
	if isIPv4(a) {
		return "", fmt.Errorf("%w: %q is an IP address", ErrInvalidName, clip(name))
	}
	return a, nil
}

// isIPv4 reports whether a name in normal form is an IPv4 address, the only
// kind of address that looks like a host name.
func isIPv4(name string) bool {
	if c := name[len(name)-1]; c < '0' || c > '9' {
		return false
	}
	_, ok := parseIPName(name)
	return ok
}

// normalizeWildcard accepts "*.example.com" as a name to manage (never as
// an SNI) and returns it normalised.
func normalizeWildcard(name string) (string, error) {
	base, ok := strings.CutPrefix(name, "*.")
	if !ok {
		return NormalizeName(name)
	}
	n, err := NormalizeName(base)
	if err != nil {
		return "", err
	}
	return "*." + n, nil
}

// parseIPName returns the address of an IP server name ("192.0.2.1",
// "2001:db8::1", "[2001:db8::1]"), unmapped, or false.
func parseIPName(name string) (netip.Addr, bool) {
	name = strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
	a, err := netip.ParseAddr(name)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func clip(s string) string {
	return textclip.Ellipsis(s, 80)
}
