package relay

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tlsmint/tlsmint/acme"
)

// Paths of the ACME API, under BaseURL.
const (
	pathDirectory   = "/directory"
	pathNewNonce    = "/new-nonce"
	pathNewAccount  = "/new-account"
	pathNewOrder    = "/new-order"
	pathRevoke      = "/revoke-cert"
	pathKeyChange   = "/key-change"
	pathRenewalInfo = "/renewal-info"
	pathAccount     = "/acct/"
	pathOrder       = "/order/"
	pathAuthz       = "/authz/"
	pathChallenge   = "/chall/"
	pathCert        = "/cert/"
)

// A resource is one entry of the ACME API's route table.
type resource struct {
	// pattern is its http.ServeMux pattern below BaseURL's path, without
	// a method: the methods are checked by the wrapper, so that a 405
	// is a problem document.
	pattern string
	// methods are those allowed; another gets 405 with Allow. Nil
	// allows every method.
	methods []string
	// signed marks a JWS POST resource: every answer carries a fresh
	// nonce and the Link to the directory, its 405 and 404 included.
	signed bool
	// valid, if set, checks the path's wildcards and returns the problem
	// of a path that is no resource.
	valid func(path pathValues) *acme.Problem
	// op is the operation of the call's audit records once the path is
	// known to be valid. Empty keeps "request".
	op string
	// serve answers the request, with the path's wildcards. Nil means
	// the path is no resource (404).
	serve func(c *call, path pathValues)
}

// pathValues returns the value of a wildcard of the path matched
// (http.Request.PathValue).
type pathValues func(name string) string

// resources is the route table of the ACME API.
func (s *Server) resources() []resource {
	get := []string{http.MethodGet, http.MethodHead}
	post := []string{http.MethodPost}
	return []resource{
		// The root is no resource, and its 404 carries no nonce.
		{pattern: "/{$}"},
		{pattern: pathDirectory, methods: get, serve: plain(s.directory)},
		{pattern: pathNewNonce, methods: get, serve: plain(s.newNonce)},
		{pattern: pathRenewalInfo + "/{id...}", methods: get, op: "renewalInfo", serve: byID(s.renewalInfo)},

		{pattern: pathNewAccount, methods: post, signed: true, op: "newAccount", serve: plain(s.newAccount)},
		{pattern: pathNewOrder, methods: post, signed: true, op: "newOrder", serve: plain(s.newOrder)},
		{pattern: pathRevoke, methods: post, signed: true, op: "revoke", serve: plain(s.revoke)},
		{pattern: pathKeyChange, methods: post, signed: true, op: "keyChange", serve: plain(s.keyChange)},
		{pattern: pathAccount + "{id}", methods: post, signed: true, valid: ids("id"), op: "account", serve: byID(s.account)},
		{pattern: pathAccount + "{id}/orders", methods: post, signed: true, valid: ids("id"), op: "orders", serve: byID(s.accountOrders)},
		{pattern: pathOrder + "{id}", methods: post, signed: true, valid: ids("id"), op: "order", serve: byID(s.order)},
		{pattern: pathOrder + "{id}/finalize", methods: post, signed: true, valid: ids("id"), op: "finalize", serve: byID(s.finalize)},
		{pattern: pathAuthz + "{id}", methods: post, signed: true, valid: ids("id"), op: "authz", serve: byID(s.authz)},
		{pattern: pathChallenge + "{authz}/{id}", methods: post, signed: true, valid: ids("authz", "id"), op: "challenge", serve: func(c *call, v pathValues) { s.challenge(c, v("authz"), v("id")) }},
		{pattern: pathCert + "{id}", methods: post, signed: true, valid: ids("id"), op: "certificate", serve: func(c *call, v pathValues) { s.certificate(c, v("id"), 0) }},
		{pattern: pathCert + "{id}/{n}", methods: post, signed: true, valid: validChainPath, op: "certificate", serve: func(c *call, v pathValues) {
			n, _ := chainIndex(v("n"))
			s.certificate(c, v("id"), n)
		}},

		// Every other path is taken for a JWS POST of no resource:
		// "/renewal-info" too, which the mux would otherwise redirect
		// to "/renewal-info/".
		{pattern: "/", methods: post, signed: true},
		{pattern: pathRenewalInfo, methods: post, signed: true},
	}
}

// apiMux returns the mux of the route table, each resource behind the
// wrapper of what its answers carry.
func (s *Server) apiMux() *http.ServeMux {
	mux := http.NewServeMux()
	for _, rs := range s.resources() {
		mux.Handle(rs.pattern, rs)
	}
	return mux
}

// ServeHTTP is the wrapper of every resource: the nonce and Link of a
// JWS POST resource, the methods allowed (405 with Allow), the path's
// wildcards, and the operation recorded, in the order clients see them.
// Its request is the mux's; the call carries the client's.
func (rs resource) ServeHTTP(_ http.ResponseWriter, r *http.Request) {
	c := r.Context().Value(callKey{}).(*call)
	if rs.signed {
		if !c.nonce() {
			return
		}
		c.link(c.url(pathDirectory), "index")
	}
	if rs.methods != nil && !c.method(rs.methods...) {
		return
	}
	path := r.PathValue
	if rs.valid != nil {
		if p := rs.valid(path); p != nil {
			c.fail(p)
			return
		}
	}
	if rs.serve == nil {
		c.fail(notFound("resource"))
		return
	}
	if rs.op != "" {
		c.op = rs.op
	}
	rs.serve(c, path)
}

// callKey is the context key of the call a mux request belongs to.
type callKey struct{}

// route answers the call with the route table's resource for p, the
// request's path below the prefix, as sent.
func (s *Server) route(c *call, p string) {
	r := c.r.WithContext(context.WithValue(c.ctx, callKey{}, c))
	r.URL = &url.URL{Path: muxPath(p)}
	s.mux.ServeHTTP(c.w, r)
}

// noSegment stands, in the path the mux matches, for a segment that no
// URL of the API has.
const noSegment = "\x00"

// muxPath returns the path the mux matches for p, an escaped path below
// the prefix. The mux cleans a path (it redirects one with an empty, "."
// or ".." segment) and unescapes its segments before it matches them,
// so that "/x/../directory" or "/dir%65ctory" would reach the directory;
// the API has always matched paths as sent, and none of its URLs has
// such a segment, so each becomes noSegment, which no literal, no ID
// and no certificate ID matches. The root stays "/".
func muxPath(p string) string {
	if p == "" || p == "/" {
		return "/"
	}
	segs := strings.Split(p[1:], "/")
	odd := false
	for i, seg := range segs {
		if seg == "" || seg == "." || seg == ".." || strings.Contains(seg, "%") {
			segs[i], odd = noSegment, true
		}
	}
	if !odd {
		return p // no escapes: the mux reads it as sent
	}
	return "/" + strings.Join(segs, "/")
}

// ids returns the check that the named wildcards are relay IDs: a path
// with another value is no resource.
func ids(names ...string) func(pathValues) *acme.Problem {
	return func(path pathValues) *acme.Problem {
		for _, n := range names {
			if !validID(path(n)) {
				return notFound("resource")
			}
		}
		return nil
	}
}

// validChainPath checks the path of a certificate's alternate chain:
// the certificate's ID, then the chain's index, 1 to 16.
func validChainPath(path pathValues) *acme.Problem {
	if p := ids("id")(path); p != nil {
		return p
	}
	if _, ok := chainIndex(path("n")); !ok {
		return notFound("certificate")
	}
	return nil
}

// chainIndex returns the alternate chain a path segment names: 1 to 16,
// without leading zeros or sign.
func chainIndex(seg string) (int, bool) {
	n, err := strconv.Atoi(seg)
	if err != nil || n < 1 || n > 16 || strconv.Itoa(n) != seg {
		return 0, false
	}
	return n, true
}

// plain adapts the handler of a resource without wildcards.
func plain(serve func(*call)) func(*call, pathValues) {
	return func(c *call, _ pathValues) { serve(c) }
}

// byID adapts the handler of a resource named by its "id" wildcard.
func byID(serve func(*call, string)) func(*call, pathValues) {
	return func(c *call, path pathValues) { serve(c, path("id")) }
}

// newNonce answers newNonce: a fresh nonce, 200 to HEAD and 204 to GET.
func (s *Server) newNonce(c *call) {
	if !c.nonce() {
		return
	}
	c.link(c.url(pathDirectory), "index")
	if c.r.Method == http.MethodHead {
		c.w.WriteHeader(http.StatusOK)
	} else {
		c.w.WriteHeader(http.StatusNoContent)
	}
}
