package acme

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Identifier types (RFC 8555 section 9.7.7, RFC 8738).
const (
	IdentifierDNS = "dns"
	IdentifierIP  = "ip"
)

// An Identifier names what a certificate is for: a DNS name (possibly a
// wildcard "*.example.com") or an IP address (RFC 8738).
type Identifier struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// String returns "type:value".
func (id Identifier) String() string { return id.Type + ":" + id.Value }

// DNSNames returns one DNS identifier per name, lower-cased and without a
// trailing dot.
func DNSNames(names ...string) []Identifier {
	ids := make([]Identifier, 0, len(names))
	for _, n := range names {
		ids = append(ids, Identifier{Type: IdentifierDNS, Value: strings.ToLower(strings.TrimSuffix(n, "."))})
	}
	return ids
}

// NormalizeIdentifiers returns a copy of ids in the form CAs compare and
// certificates carry: DNS names lower-cased without a trailing dot, IP
// addresses in canonical form (IPv4-mapped IPv6 unmapped). Identifiers
// built by hand go through it before an order and a CSR. It fails on an
// empty value, an unparsable IP address or an unknown type.
func NormalizeIdentifiers(ids []Identifier) ([]Identifier, error) {
	if len(ids) == 0 {
		return nil, errors.New("no identifiers")
	}
	out := make([]Identifier, 0, len(ids))
	for _, id := range ids {
		switch id.Type {
		case IdentifierDNS:
			v := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(id.Value), "."))
			if v == "" {
				return nil, errors.New("empty DNS identifier")
			}
			out = append(out, Identifier{Type: IdentifierDNS, Value: v})
		case IdentifierIP:
			a, err := netip.ParseAddr(strings.TrimSpace(id.Value))
			if err != nil {
				return nil, fmt.Errorf("bad IP identifier %q", clipString(id.Value, 64))
			}
			out = append(out, Identifier{Type: IdentifierIP, Value: a.Unmap().String()})
		default:
			return nil, fmt.Errorf("unsupported identifier type %q", clipString(id.Type, 32))
		}
	}
	return out, nil
}

// IPAddresses returns one IP identifier per address (RFC 8738). IPv4-mapped
// IPv6 addresses are unmapped.
func IPAddresses(addrs ...netip.Addr) []Identifier {
	ids := make([]Identifier, 0, len(addrs))
	for _, a := range addrs {
		ids = append(ids, Identifier{Type: IdentifierIP, Value: a.Unmap().String()})
	}
	return ids
}
