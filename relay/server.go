package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/storage"
)

// Defaults of a Server's zero fields.
const (
	// DefaultFinalizeWait is how long a finalize request waits for the
	// upstream certificate before it answers "processing".
	DefaultFinalizeWait = 3 * time.Second
	// DefaultUpstreamTimeout bounds one upstream issuance, fallbacks
	// included.
	DefaultUpstreamTimeout = 10 * time.Minute
	// OrderLifetime is how long a downstream order and its pending
	// authorizations stay usable.
	OrderLifetime = 7 * 24 * time.Hour
	// AuthorizationLifetime is how long a valid authorization lasts.
	AuthorizationLifetime = 30 * 24 * time.Hour
)

// A Server is an ACME server (RFC 8555) for the clients of an
// organisation — certbot, lego, acme.sh, Caddy, tlsmint — that obtains
// each certificate from an upstream CA with its own accounts. It is an
// [http.Handler] serving the ACME API; [Server.AdminHandler] serves the
// administration API for tenants and EAB keys.
//
// Set the fields before the first request and do not change them
// afterwards. A Server is safe for concurrent use. [Server.Close] stops
// its background issuances; the state lives in Storage, so another
// Server on the same storage carries on.
type Server struct {
	// Storage keeps the relay's state: accounts, orders, authorizations,
	// certificates, tenants and EAB keys (secrets: files are 0600).
	// Required.
	Storage storage.Storage

	// BaseURL is the external URL of the ACME API, such as
	// "https://acme.example.com/acme"; the directory is BaseURL +
	// "/directory" and the Server expects requests for paths under
	// BaseURL's path (mount it there without stripping the prefix). Empty
	// means "https://" + the request's Host, at the root.
	BaseURL string

	// Upstreams are the CAs certificates are obtained from, tried in
	// order: when one fails (outage, rate limit, refusal), the next is
	// asked. At least one is needed to issue anything.
	Upstreams []*Upstream

	// Routes send the orders they match to some of the Upstreams, in
	// their own order (the first route that matches an order decides).
	// An order no route matches goes to Upstreams in order. Empty means
	// every order goes to Upstreams.
	Routes []Route

	// Anonymous, if not nil, is the policy of accounts registered without
	// External Account Binding. Nil means every account needs an EAB key
	// of a tenant (the directory says externalAccountRequired).
	Anonymous *Policy

	// TermsOfService is the URL of the relay's terms of service; when set,
	// new accounts must agree to them. Empty means none.
	TermsOfService string

	// Website is announced in the directory's meta. Empty means none.
	Website string

	// Profiles are the certificate profiles offered downstream (name to
	// description), passed upstream as they are. Empty means none: an
	// order naming a profile is refused.
	Profiles map[string]string

	// Validator checks downstream challenges. Nil means a Validator with
	// its defaults (ports 80 and 443, the system resolver).
	Validator *Validator

	// AuditLog, if set, receives a record of every decision: each account,
	// order, validation, issuance and revocation accepted, and each
	// request refused with the reason — except that of the refusals of
	// requests that carry no valid account (a bad JWS, an unknown kid, no
	// EAB) it gets a sample: one per problem type and source network per
	// UnauthenticatedSampleInterval, saying how many were left out.
	// An audit.Log of package audit is the usual one.
	AuditLog AuditLog

	// OnDecision, if set, is called with each decision record, including
	// every unauthenticated refusal AuditLog gets only a sample of
	// (whether or not AuditLog is set), for example
	// metrics.Collector.ObserveDecision. It is called on the goroutine
	// that decided, and must be safe for concurrent use and not block.
	OnDecision func(record.Audit)

	// AllowedSources, if not empty, are the only client addresses
	// (RemoteAddr) the ACME API answers; others get 403 unauthorized.
	// Tenants may narrow it further (Policy.Sources).
	AllowedSources []netip.Prefix

	// RequireClientCert makes the ACME API answer only requests that
	// came with a client certificate the TLS server verified
	// (http.Request.TLS.VerifiedChains); others get 403 unauthorized.
	// Serve the Server with a tls.Config whose ClientCAs are the CAs of
	// the clients' certificates and whose ClientAuth is
	// tls.VerifyClientCertIfGiven (a client without a certificate then
	// gets a problem document; tls.RequireAndVerifyClientCert fails its
	// handshake instead). False accepts requests without one, but a
	// tenant may still need one (Policy.ClientNames).
	RequireClientCert bool

	// AdminToken authenticates the administration API (a bearer token).
	// Empty means the administration API refuses every request.
	AdminToken string

	// AdminSources, if not empty, are the only client addresses the
	// administration API answers.
	AdminSources []netip.Prefix

	// MaxBodySize bounds a request body. Zero means DefaultMaxBodySize.
	MaxBodySize int64

	// MaxNonces bounds the issued, unused nonces remembered. Zero means
	// DefaultMaxNonces. Nonces live in memory: a restart invalidates them
	// (clients retry on badNonce). Unused with SharedNonces.
	MaxNonces int

	// SharedNonces makes every nonce valid at every Server on the same
	// Storage (replicas behind a load balancer that is not sticky), and
	// across restarts, for NonceLifetime: a nonce carries its issue time
	// and a MAC under a key kept in the Storage, and each redemption is
	// recorded in the Storage under a lock, so a nonce is accepted once
	// by all the replicas together. It costs a lock, a Stat and a Store
	// per signed request. False keeps nonces in this process's memory.
	SharedNonces bool

	// NonceLifetime is how long a shared nonce stays valid. Zero means
	// DefaultNonceLifetime.
	NonceLifetime time.Duration

	// FinalizeWait is how long a finalize request waits for the upstream
	// certificate before answering "processing" (the client then polls).
	// Zero means DefaultFinalizeWait.
	FinalizeWait time.Duration

	// UpstreamTimeout bounds one upstream issuance. Zero means
	// DefaultUpstreamTimeout.
	UpstreamTimeout time.Duration

	// Retention says how long ended orders, authorizations, certificates
	// and rate-limit records are kept, and how often the background
	// sweeper deletes them. The zero value is the defaults (orders 7 days
	// after they expired, certificates 30 days after their NotAfter,
	// hourly).
	Retention Retention

	// Logger receives the relay's logs. Nil means silent. Keys, MACs and
	// nonces are never logged.
	Logger *slog.Logger

	once     sync.Once
	initErr  error
	nonces   *nonces
	shared   *sharedNonces // with SharedNonces
	base     *url.URL      // parsed BaseURL, nil when empty
	prefix   string        // BaseURL's path without a trailing slash
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	mu       sync.Mutex
	closed   bool
	running  map[string]chan struct{} // order id → closed when its issuance ends
	lockWait time.Duration            // defaultLockWait when zero (tests)
	sample   sampler                  // of unauthenticated refusals
	shard    string                   // this Server's name in sharded rate records
	mux      *http.ServeMux           // the ACME API's route table

	rateMu    sync.Mutex
	rateLocks map[string]*sync.Mutex // tenant rate-record folder → its mutex
	now       func() time.Time
}

func (s *Server) init() {
	s.once.Do(func() {
		if s.SharedNonces {
			lt := s.NonceLifetime
			if lt <= 0 {
				lt = DefaultNonceLifetime
			}
			s.shared = &sharedNonces{s: s, lifetime: lt}
		} else {
			s.nonces = newNonces(s.MaxNonces)
		}
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.running = map[string]chan struct{}{}
		s.shard = newID()
		s.mux = s.apiMux()
		if s.now == nil {
			s.now = time.Now
		}
		if s.Storage == nil {
			s.initErr = errors.New("relay: Server.Storage is nil")
			return
		}
		if s.BaseURL != "" {
			u, err := url.Parse(strings.TrimSuffix(s.BaseURL, "/"))
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
				s.initErr = fmt.Errorf("relay: BaseURL %q is not an absolute http(s) URL without query", s.BaseURL)
				return
			}
			s.base = u
			s.prefix = u.EscapedPath()
		}
		seen := map[string]bool{}
		for i, u := range s.Upstreams {
			if u == nil || u.Client == nil {
				s.initErr = fmt.Errorf("relay: Upstreams[%d] has no Client", i)
				return
			}
			if seen[u.name()] {
				s.initErr = fmt.Errorf("relay: two upstreams are called %q", u.name())
				return
			}
			seen[u.name()] = true
		}
		if err := s.checkRoutes(); err != nil {
			s.initErr = err
			return
		}
		if s.Retention.interval() > 0 {
			s.wg.Add(1)
			go s.sweepLoop()
		}
	})
}

// Validate reports a configuration the Server cannot serve with: no
// Storage, a BaseURL that is not an absolute http(s) URL, an upstream
// without a Client or two with one name, a route naming no upstream or
// one not in Upstreams. While it returns an error, every request gets
// 500 and the Go API returns it. It counts as the Server's first use.
func (s *Server) Validate() error {
	s.init()
	return s.initErr
}

// Close stops the issuances running in the background and the sweeper,
// and waits for them.
// Their orders stay "processing" in storage, saying that the relay shut
// down, and the Server on the storage that next reads one (after a
// restart, or another replica) resumes its issuance, from the upstream
// order already placed when there is one. Requests after Close get 503.
func (s *Server) Close() error {
	s.init()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return discardLogger
}

var discardLogger = slog.New(slog.DiscardHandler)

func (s *Server) maxBody() int64 {
	if s.MaxBodySize > 0 {
		return s.MaxBodySize
	}
	return DefaultMaxBodySize
}

// A call is one request being answered.
type call struct {
	s      *Server
	w      http.ResponseWriter
	r      *http.Request
	ctx    context.Context
	origin string // scheme://host of the relay's URLs
	op     string // the operation, for audit records

	// Filled in as the request is understood, for the audit record.
	acct   *accountRecord
	tenant string
	names  []string

	tenantCreated time.Time // the Created of the tenant policy loaded
	pol           *Policy   // the tenant policy loaded, nil before
}

// ServeHTTP serves the ACME API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.init()
	c := &call{s: s, w: w, r: r, ctx: r.Context(), op: "request"}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.logger().Error("relay: panic serving a request", "path", clip(r.URL.Path, 256), "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			c.fail(internalError("internal error"))
		}
	}()
	w.Header().Set("Cache-Control", "no-store")
	if s.initErr != nil {
		s.logger().Error("relay: misconfigured", "err", s.initErr)
		c.fail(internalError("the relay is misconfigured"))
		return
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		c.fail(problem(probServerInternal, http.StatusServiceUnavailable, "the relay is shutting down"))
		return
	}
	if s.base != nil {
		c.origin = s.base.Scheme + "://" + s.base.Host
	} else {
		c.origin = "https://" + r.Host
	}
	path := r.URL.EscapedPath()
	rest, ok := strings.CutPrefix(path, s.prefix)
	if !ok || (rest != "" && rest[0] != '/') {
		c.fail(notFound("resource"))
		return
	}
	if !allowedSource(r, s.AllowedSources) {
		c.fail(unauthorized("requests from this address are not allowed"))
		return
	}
	if p := s.requireClientCert(r); p != nil {
		c.fail(p)
		return
	}
	s.route(c, rest)
}

// allowedSource reports whether the request's remote address is in one of
// prefixes (or prefixes is empty).
func allowedSource(r *http.Request, prefixes []netip.Prefix) bool {
	if len(prefixes) == 0 {
		return true
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// method reports whether the request uses one of methods, and answers 405
// when it does not.
func (c *call) method(methods ...string) bool {
	for _, m := range methods {
		if c.r.Method == m {
			return true
		}
	}
	c.w.Header().Set("Allow", strings.Join(methods, ", "))
	c.fail(problem(probMalformed, http.StatusMethodNotAllowed, "method %s not allowed here", clip(c.r.Method, 16)))
	return false
}

// url returns the absolute URL of a path of the API.
func (c *call) url(path string) string { return c.origin + c.s.prefix + path }

// requestURL returns the URL the client must have signed for: the origin
// and the request's path exactly as sent.
func (c *call) requestURL() string { return c.origin + c.r.URL.RequestURI() }

// nonce adds a fresh Replay-Nonce to the response. When no nonce can be
// made (the storage of shared nonces failed) it answers the request with
// a problem and returns false.
func (c *call) nonce() bool {
	if c.s.shared == nil {
		c.w.Header().Set("Replay-Nonce", c.s.nonces.issue())
		return true
	}
	v, err := c.s.shared.issue(c.ctx)
	if err != nil {
		c.fail(c.storageFailed(err))
		return false
	}
	c.w.Header().Set("Replay-Nonce", v)
	return true
}

// redeemNonce reports whether v is a valid nonce, using it up.
func (c *call) redeemNonce(v string) *acme.Problem {
	ok := false
	if c.s.shared == nil {
		ok = c.s.nonces.redeem(v)
	} else {
		var err error
		if ok, err = c.s.shared.redeem(c.ctx, v); err != nil {
			return c.storageFailed(err)
		}
	}
	if !ok {
		return problem(probBadNonce, http.StatusBadRequest, "the nonce is unknown, expired or already used")
	}
	return nil
}

// link adds a Link header.
func (c *call) link(target, rel string) {
	c.w.Header().Add("Link", "<"+target+`>;rel="`+rel+`"`)
}

// reply sends v as JSON with status.
func (c *call) reply(status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.fail(internalError("encoding the response failed"))
		return
	}
	c.w.Header().Set("Content-Type", "application/json")
	c.w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	c.w.WriteHeader(status)
	c.w.Write(b)
}

// fail sends a problem document and records the refusal.
func (c *call) fail(p *acme.Problem) {
	switch {
	case p.Status >= 500:
		c.s.logger().Warn("relay: request failed", "op", c.op, "problem", p)
	case (c.op == "newOrder" || c.op == "finalize") && c.acct != nil:
		// Each order an account had refused is one line at the default
		// level (a request without a valid account is not: a scan would
		// fill the log).
		c.s.logger().Info("relay: order refused", "op", c.op, "tenant", tenantLabel(c.acct.Tenant), "account", c.acct.ID, "names", c.names, "source", remoteAddr(c.r.RemoteAddr), "problem", p)
	default:
		c.s.logger().Debug("relay: request refused", "op", c.op, "problem", p)
	}
	outcome := record.OutcomeRefused
	if p.Status >= 500 {
		outcome = record.OutcomeFailure
	}
	c.audit(outcome, p)
	writeProblem(c.w, p)
}

// storageFailed turns a storage error into a 500 problem, logging it; a
// lock that stayed busy is a 503 with a Retry-After.
func (c *call) storageFailed(err error) *acme.Problem {
	if c.ctx.Err() != nil {
		return problem(probServerInternal, http.StatusServiceUnavailable, "the request was cancelled")
	}
	c.s.logger().Error("relay: storage failed", "op", c.op, "err", err)
	if errors.Is(err, errLockBusy) {
		p := problem(probServerInternal, http.StatusServiceUnavailable, "the relay's storage is busy; try again later")
		p.RetryAfter = lockBusyRetryAfter
		return p
	}
	return internalError("the relay's storage failed")
}

// loadFailed answers the error of loading a record: nil for none, a 404
// naming what for a missing record, storageFailed's problem otherwise.
func (c *call) loadFailed(err error, what string) *acme.Problem {
	switch {
	case err == nil:
		return nil
	case isNotFound(err):
		return notFound(what)
	}
	return c.storageFailed(err)
}

// lockBusyRetryAfter is the Retry-After of a problem for a lock that
// stayed busy.
const lockBusyRetryAfter = 10 * time.Second

// directory serves the directory object.
func (s *Server) directory(c *call) {
	d := acme.Directory{
		NewNonce:    c.url(pathNewNonce),
		NewAccount:  c.url(pathNewAccount),
		NewOrder:    c.url(pathNewOrder),
		RevokeCert:  c.url(pathRevoke),
		KeyChange:   c.url(pathKeyChange),
		RenewalInfo: c.url(pathRenewalInfo),
		Meta: acme.DirectoryMeta{
			TermsOfService:          s.TermsOfService,
			Website:                 s.Website,
			ExternalAccountRequired: s.Anonymous == nil,
			Profiles:                s.Profiles,
		},
	}
	c.reply(http.StatusOK, d)
}
