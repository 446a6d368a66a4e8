package relay

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/tlsmint/tlsmint/acme"
)

// A Route sends the orders it matches to some of the Server's upstreams,
// tried in the route's order instead of Server.Upstreams': for example IP
// addresses to a CA's "shortlived" profile, or the names one CA refuses
// to another.
//
// A route matches an order when the order's tenant is one of Tenants (or
// Tenants is empty) and every identifier of the order is matched: a DNS
// name when it is one of Names or below one (a wildcard "*.example.com"
// by its "example.com"), an IP address when it is in one of IPRanges. A
// route with neither Names nor IPRanges matches every identifier.
type Route struct {
	// Names are the DNS names matched, each with every name below it.
	Names []string `json:"names,omitempty"`
	// IPRanges are the IP addresses matched.
	IPRanges []netip.Prefix `json:"ip_ranges,omitempty"`
	// Tenants, if not empty, limits the route to the orders of these
	// tenants.
	Tenants []string `json:"tenants,omitempty"`
	// Upstreams are the names of the upstreams (Upstream.Name, or the
	// directory URL when it is empty) tried for a matching order, in
	// order. Required.
	Upstreams []string `json:"upstreams"`
	// Profile is asked of these upstreams for an order that names no
	// profile. Empty means none (the CA's default).
	Profile string `json:"profile,omitempty"`
}

// matches reports whether the route takes an order of tenant for ids.
func (r *Route) matches(tenant string, ids []acme.Identifier) bool {
	if len(r.Tenants) > 0 && !slices.Contains(r.Tenants, tenant) {
		return false
	}
	if len(r.Names) == 0 && len(r.IPRanges) == 0 {
		return true
	}
	for _, id := range ids {
		switch id.Type {
		case acme.IdentifierDNS:
			if !under(strings.TrimPrefix(id.Value, "*."), r.Names) {
				return false
			}
		case acme.IdentifierIP:
			a, err := netip.ParseAddr(id.Value)
			if err != nil || !slices.ContainsFunc(r.IPRanges, func(p netip.Prefix) bool { return p.Contains(a) }) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// checkRoutes reports what is wrong with the Server's routes, or nil.
func (s *Server) checkRoutes() error {
	for i, r := range s.Routes {
		if len(r.Upstreams) == 0 {
			return fmt.Errorf("relay: Routes[%d] has no upstream", i)
		}
		for _, n := range r.Upstreams {
			if s.upstream(n) == nil {
				return fmt.Errorf("relay: Routes[%d] names upstream %q, which is not in Upstreams", i, clip(n, 64))
			}
		}
		for _, n := range r.Names {
			if _, p := normalizeDNS(n, false); p != nil {
				return fmt.Errorf("relay: Routes[%d] name %q: %s", i, clip(n, 64), p.Detail)
			}
		}
	}
	return nil
}

// routeFor returns the upstreams to try for an order of tenant for ids,
// in order, and the profile to ask for when the order names none: those
// of the first route that matches, else every upstream and no profile.
func (s *Server) routeFor(tenant string, ids []acme.Identifier) ([]*Upstream, string) {
	for i := range s.Routes {
		r := &s.Routes[i]
		if !r.matches(tenant, ids) {
			continue
		}
		ups := make([]*Upstream, 0, len(r.Upstreams))
		for _, n := range r.Upstreams {
			if u := s.upstream(n); u != nil {
				ups = append(ups, u)
			}
		}
		return ups, r.Profile
	}
	return s.Upstreams, ""
}
