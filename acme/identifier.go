package acme

import (
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

// IPAddresses returns one IP identifier per address (RFC 8738). IPv4-mapped
// IPv6 addresses are unmapped.
func IPAddresses(addrs ...netip.Addr) []Identifier {
	ids := make([]Identifier, 0, len(addrs))
	for _, a := range addrs {
		ids = append(ids, Identifier{Type: IdentifierIP, Value: a.Unmap().String()})
	}
	return ids
}
