package relay

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/tlsmint/tlsmint/acme"
	"golang.org/x/net/idna"
)

// maxSubproblems bounds the subproblems of one refusal.
const maxSubproblems = 16

// rejected returns a rejectedIdentifier problem about id.
func rejected(id acme.Identifier, format string, args ...any) *acme.Problem {
	p := problem(probRejectedIdentifier, http.StatusBadRequest, format, args...)
	p.Identifier = &acme.Identifier{Type: clip(id.Type, 16), Value: clip(id.Value, 256)}
	return p
}

// normalizeDNS checks a DNS identifier's value and returns it in the form
// certificates carry: lower case, no trailing dot, only letters, digits
// and hyphens in labels of 1 to 63 bytes, at most 253 bytes, at least two
// labels, a last label that is not all digits, "xn--" labels that are
// valid punycode, and "*." only as the whole first label when wildcards
// are allowed.
func normalizeDNS(v string, wildcard bool) (string, *acme.Problem) {
	id := acme.Identifier{Type: acme.IdentifierDNS, Value: v}
	n := strings.ToLower(strings.TrimSuffix(v, "."))
	if n == "" {
		return "", rejected(id, "empty DNS name")
	}
	if len(n) > 253 {
		return "", rejected(id, "DNS name longer than 253 bytes")
	}
	base := n
	if b, ok := strings.CutPrefix(n, "*."); ok {
		if !wildcard {
			return "", rejected(id, "wildcard names are not allowed here")
		}
		base = b
	}
	labels := strings.Split(base, ".")
	if len(labels) < 2 {
		return "", rejected(id, "DNS name %q has a single label", clip(n, 64))
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return "", rejected(id, "DNS name %q has an empty label or one longer than 63 bytes", clip(n, 64))
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				if c >= 0x80 {
					return "", rejected(id, "DNS name %q is not ASCII: send internationalised names as A-labels (xn--)", clip(n, 64))
				}
				return "", rejected(id, "DNS name %q contains the character %q", clip(n, 64), string(rune(c)))
			}
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "", rejected(id, "DNS name %q has a label starting or ending with a hyphen", clip(n, 64))
		}
		if len(l) >= 4 && l[2:4] == "--" {
			if !strings.HasPrefix(l, "xn--") {
				return "", rejected(id, "DNS name %q has a reserved label (two hyphens at positions 3 and 4)", clip(n, 64))
			}
			if _, err := idna.Lookup.ToUnicode(l); err != nil {
				return "", rejected(id, "DNS name %q has an invalid punycode label", clip(n, 64))
			}
		}
	}
	last := labels[len(labels)-1]
	if strings.Trim(last, "0123456789") == "" {
		return "", rejected(id, "DNS name %q ends in a numeric label: use an IP identifier for addresses", clip(n, 64))
	}
	return n, nil
}

// normalizeIP checks an IP identifier's value and returns its canonical
// form (RFC 8738; IPv4-mapped IPv6 unmapped, no zone).
func normalizeIP(v string) (string, *acme.Problem) {
	id := acme.Identifier{Type: acme.IdentifierIP, Value: v}
	a, err := netip.ParseAddr(v)
	if err != nil || a.Zone() != "" {
		return "", rejected(id, "%q is not an IP address", clip(v, 64))
	}
	return a.Unmap().String(), nil
}

// normalizeIdentifiers checks and normalises an order's identifiers,
// dropping duplicates. Every identifier is checked; the problems of all
// refused ones are returned together.
func normalizeIdentifiers(ids []acme.Identifier) ([]acme.Identifier, *acme.Problem) {
	if len(ids) == 0 {
		return nil, malformed("the order has no identifiers")
	}
	var subs []acme.Problem
	out := make([]acme.Identifier, 0, len(ids))
	seen := make(map[acme.Identifier]bool, len(ids))
	for _, id := range ids {
		var v string
		var p *acme.Problem
		switch id.Type {
		case acme.IdentifierDNS:
			v, p = normalizeDNS(id.Value, true)
		case acme.IdentifierIP:
			v, p = normalizeIP(id.Value)
		default:
			p = problem(probUnsupportedIdentifier, http.StatusBadRequest, "identifier type %q is not supported (dns, ip)", clip(id.Type, 16))
			p.Identifier = &acme.Identifier{Type: clip(id.Type, 16), Value: clip(id.Value, 256)}
		}
		if p != nil {
			subs = append(subs, *p)
			continue
		}
		n := acme.Identifier{Type: id.Type, Value: v}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	if p := combine(subs, probRejectedIdentifier, "identifiers refused"); p != nil {
		return nil, p
	}
	return out, nil
}

// combine returns nil for no problems, the problem itself for one, and a
// problem of kind with the others as subproblems for more.
func combine(subs []acme.Problem, kind, detail string) *acme.Problem {
	switch len(subs) {
	case 0:
		return nil
	case 1:
		return &subs[0]
	}
	p := problem(kind, http.StatusBadRequest, "%s (%d)", detail, len(subs))
	if len(subs) > maxSubproblems {
		subs = subs[:maxSubproblems]
	}
	p.Subproblems = subs
	return p
}
