package relay

import (
	"net/netip"
)

// A reservedRange is an address range the validator does not connect to
// unless the tenant's Policy.ValidationTargets allow it: the address of
// a service inside the relay's own network (loopback, a cloud metadata
// service on link-local, RFC 1918 and RFC 6598 networks, unique local
// IPv6) or one that no public server has (unspecified, multicast,
// documentation and benchmarking ranges, reserved space).
type reservedRange struct {
	prefix netip.Prefix
	what   string // the range's kind, for a problem's detail
}

// reservedRanges are the ranges of the IANA IPv4 and IPv6
// special-purpose address registries that are not globally reachable,
// with multicast and the IPv4 reserved space. IPv4-mapped IPv6
// addresses are checked as the IPv4 address they map; IPv6 ranges that
// embed an IPv4 address (6to4, Teredo, the deprecated IPv4-compatible
// and NAT64's local-use) are refused whole.
var reservedRanges = []reservedRange{
	{netip.MustParsePrefix("0.0.0.0/8"), "\"this network\", RFC 1122"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private, RFC 1918"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space, RFC 6598"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local, where cloud metadata services answer"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private, RFC 1918"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments, RFC 6890"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation, RFC 5737"},
	{netip.MustParsePrefix("192.88.99.0/24"), "6to4 relay anycast, RFC 7526"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private, RFC 1918"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking, RFC 2544"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation, RFC 5737"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation, RFC 5737"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved by RFC 1112, or broadcast"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("::/96"), "IPv4-compatible, deprecated by RFC 4291"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64, RFC 8215"},
	{netip.MustParsePrefix("100::/64"), "discard-only, RFC 6666"},
	{netip.MustParsePrefix("2001::/23"), "IETF protocol assignments: Teredo, benchmarking, ORCHID; RFC 2928"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation, RFC 3849"},
	{netip.MustParsePrefix("2002::/16"), "6to4, RFC 3056"},
	{netip.MustParsePrefix("3fff::/20"), "documentation, RFC 9637"},
	{netip.MustParsePrefix("5f00::/16"), "segment routing, RFC 9602"},
	{netip.MustParsePrefix("fc00::/7"), "unique local, RFC 4193"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local, deprecated by RFC 3879"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// nat64Prefix is the well-known NAT64 prefix (RFC 6052), whose addresses
// embed an IPv4 address.
var nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")

// reservedKind returns the kind of reserved range a is in (an
// IPv4-mapped address as its IPv4 address), or "" for an address the
// validator may connect to for any tenant. A NAT64 address
// (64:ff9b::/96) is as reserved as the IPv4 address it embeds.
func reservedKind(a netip.Addr) string {
	a = a.Unmap()
	if a.Zone() != "" {
		return "scoped, with a zone"
	}
	if a.Is6() {
		if nat64Prefix.Contains(a) {
			b := a.As16()
			if k := reservedKind(netip.AddrFrom4([4]byte(b[12:]))); k != "" {
				return "NAT64 of " + k
			}
			return ""
		}
	}
	for _, r := range reservedRanges {
		if r.prefix.Contains(a) {
			return r.what
		}
	}
	return ""
}

// addrPolicy decides which addresses one validation may connect to:
// every address outside the reserved ranges, and those inside that the
// tenant allows.
type addrPolicy struct {
	allow []netip.Prefix
}

// check returns "" when a may be dialled, or else the kind of reserved
// range it is in.
func (ap addrPolicy) check(a netip.Addr) string {
	a = a.Unmap()
	k := reservedKind(a)
	if k == "" || inRanges(a.WithZone(""), ap.allow) {
		return ""
	}
	return k
}
