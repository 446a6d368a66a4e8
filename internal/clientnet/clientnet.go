// Package clientnet names the network a client address belongs to, as the
// relay counts unauthenticated refusals and the metrics label them: its
// IPv4 /24 or IPv6 /48.
package clientnet

import "net/netip"

// Other is the network of what is not an address.
const Other = "other"

// Of returns the network of addr: its IPv4 /24 or IPv6 /48, in CIDR
// notation ("203.0.113.0/24", "2001:db8:1::/48"), an IPv4-mapped IPv6
// address counted as IPv4 and a zone ignored; Other when addr is not an
// address.
func Of(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return Other
	}
	a = a.Unmap().WithZone("")
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p.String()
}
