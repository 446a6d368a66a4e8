package testpebble

import (
	"strings"
	"sync/atomic"
)

// Endpoint names used by [CA.Requests] and [CA.RequestCounts]. Besides the
// ACME resources, "orders" counts requests for an account's order list,
// "management" counts requests to Pebble's management paths (/roots/ and
// friends) and "other" counts everything else.
var endpointNames = []string{
	"directory", "newNonce", "newAccount", "newOrder", "order", "finalize",
	"authz", "challenge", "certificate", "revokeCert", "keyChange", "account",
	"renewalInfo", "orders", "management", "other",
}

// Pebble's request paths (constants in its wfe package, mostly unexported).
var (
	exactPaths = map[string]string{
		"/dir":                  "directory",
		"/nonce-plz":            "newNonce",
		"/sign-me-up":           "newAccount",
		"/order-plz":            "newOrder",
		"/revoke-cert":          "revokeCert",
		"/rollover-account-key": "keyChange",
	}
	prefixPaths = []struct{ prefix, endpoint string }{
		{"/my-account/", "account"},
		{"/my-order/", "order"},
		{"/finalize-order/", "finalize"},
		{"/authZ/", "authz"},
		{"/chalZ/", "challenge"},
		{"/certZ/", "certificate"},
		{"/list-orderz/", "orders"},
		{"/draft-ietf-acme-ari-03/renewalInfo", "renewalInfo"},
	}
	managementPrefixes = []string{
		"/roots/", "/root-keys/", "/intermediates/", "/intermediate-keys/",
		"/cert-status-by-serial/", "/set-renewal-info/",
	}
)

// classify returns the endpoint name of a request path.
func classify(path string) string {
	if e, ok := exactPaths[path]; ok {
		return e
	}
	for _, p := range prefixPaths {
		if strings.HasPrefix(path, p.prefix) {
			return p.endpoint
		}
	}
	if isManagement(path) {
		return "management"
	}
	return "other"
}

// isManagement reports whether path belongs to Pebble's management interface.
func isManagement(path string) bool {
	for _, p := range managementPrefixes {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// counters holds one atomic counter per endpoint name. The map is built once
// and never modified, so reading it needs no lock.
type counters map[string]*atomic.Int64

func newCounters() counters {
	c := make(counters, len(endpointNames))
	for _, name := range endpointNames {
		c[name] = new(atomic.Int64)
	}
	return c
}

// add counts one request to endpoint, which must be one of endpointNames.
func (c counters) add(endpoint string) { c[endpoint].Add(1) }

// get returns the count of endpoint, 0 for an unknown name.
func (c counters) get(endpoint string) int {
	if n, ok := c[endpoint]; ok {
		return int(n.Load())
	}
	return 0
}

// snapshot returns the non-zero counts.
func (c counters) snapshot() map[string]int {
	m := make(map[string]int)
	for name, n := range c {
		if v := n.Load(); v != 0 {
			m[name] = int(v)
		}
	}
	return m
}

// reset sets every count to zero.
func (c counters) reset() {
	for _, n := range c {
		n.Store(0)
	}
}
