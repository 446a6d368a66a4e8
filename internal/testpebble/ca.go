package testpebble

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures a [CA]. The zero value is a CA that validates for real,
// without sleeping, rejects no nonces and never reuses authorizations.
type Options struct {
	// HTTPPort and TLSPort are the ports Pebble's validation authority
	// connects to for http-01 and tls-alpn-01, on the address the mock DNS
	// server gives for the identifier (always 127.0.0.1) or on the IP
	// identifier itself. Zero picks a free loopback port, reported by
	// [CA.HTTPPort] and [CA.TLSPort]; nothing listens on it until the test
	// starts its own solver there, and until then (for about a minute) the
	// port is kept from other sockets, so that the test's net.Listen on it
	// cannot find it taken.
	HTTPPort, TLSPort int

	// AlwaysValid makes the validation authority report every challenge
	// valid without contacting anything.
	AlwaysValid bool

	// RequireEAB makes the directory announce externalAccountRequired and
	// newAccount demand an external account binding.
	RequireEAB bool

	// EABKeys are external account binding keys: key ID to the HMAC key in
	// base64url without padding. Nil means none (more can be added later
	// with [CA.AddEABKey]).
	EABKeys map[string]string

	// Profiles maps certificate profile names to the validity of the
	// certificates issued under them; a zero duration means Pebble's default
	// (90 days). Nil means a single profile "default". An order that names
	// no profile gets one of them at random.
	Profiles map[string]time.Duration

	// ChainLength is the number of intermediates between root and leaf.
	// Zero means 1, Pebble's default.
	ChainLength int

	// AlternateRoots is the number of alternate chains, each under its own
	// root, offered besides the default one. Zero means none.
	AlternateRoots int

	// RetryAfterAuthz and RetryAfterOrder are the Retry-After values, in
	// seconds, that Pebble sends on pending authorizations and on orders
	// that are processing. Zero sends none. Pebble picks at random, for each
	// response, between the delay in seconds and an HTTP date.
	RetryAfterAuthz, RetryAfterOrder int

	// NonceRejectPercent is the share (0 to 100) of valid nonces that Pebble
	// rejects with badNonce anyway. Zero rejects none (Pebble's own default
	// is 5); 100 rejects every one.
	NonceRejectPercent int

	// AuthzReusePercent is how often (0 to 100) Pebble reuses a valid
	// authorization of the account for an identifier of a new order. Zero
	// never reuses (Pebble's own default is 50). Pebble reuses one time in
	// a hundred more often than the value says (its check is off by one);
	// for zero, the CA hides the valid authorizations from Pebble's lookup
	// while it handles a newOrder request, so that zero means never.
	AuthzReusePercent int

	// VASleep makes the validation authority sleep a random time before
	// each validation, as Pebble does by default. False (the default) makes
	// it validate at once.
	VASleep bool

	// VASleepMax is the maximum sleep, in seconds, when VASleep is set.
	// Zero means Pebble's default of 5.
	VASleepMax int

	// OrdersPerPage is the page size of an account's order list. Zero means
	// Pebble's default of 3.
	OrdersPerPage int

	// KeyAlgorithm is the key type of the CA's roots and intermediates:
	// "ecdsa" (P-256), "rsa" (2048 bits) or "mldsa". Empty means "ecdsa",
	// which is much faster to generate than Pebble's default "rsa".
	KeyAlgorithm string

	// Strict turns on Pebble's strict mode (upcoming breaking changes).
	Strict bool

	// BlockedDomains are domains (and their subdomains) Pebble refuses to
	// issue for, with a rejectedIdentifier problem.
	BlockedDomains []string

	// Wrap, if not nil, wraps the ACME handler, for fault injection. It is
	// called once, by New, and its handler survives [CA.Reset]. Every
	// request is counted and logged before it reaches Wrap's handler, and
	// the faults of [CA.SetDown] and [CA.RateLimit] answer before it;
	// requests to Pebble's management paths bypass it.
	Wrap func(http.Handler) http.Handler

	// Logger receives Pebble's logs. Nil discards them.
	Logger *log.Logger
}

// CA is Pebble's ACME CA, validation authority and web front end running
// in-process: the ACME API is served over HTTPS on a loopback port, and the
// validation authority resolves names through the CA's own mock
// [DNSServer].
//
// Pebble's management paths (/roots/N, /intermediates/N, /set-renewal-info/,
// /cert-status-by-serial/…) are served on the same port.
//
// A CA is safe for concurrent use. Close stops its HTTPS and DNS servers; the
// validation authority's goroutine is Pebble's and cannot be stopped, so
// goroutine leak checkers and testing/synctest bubbles cannot wrap a CA.
type CA struct {
	opts   Options     // as given to New, checked
	logger *log.Logger // never nil
	dns    *DNSServer

	// cur is Pebble's current incarnation; [CA.Reset] replaces it.
	cur atomic.Pointer[backend]
	mu  sync.Mutex        // serialises out-of-band changes to the db, and Reset
	eab map[string]string // every EAB key, kept across Reset; guarded by mu

	// The HTTPS server, one per period of listening (see server.go).
	srvMu     sync.Mutex
	srv       *http.Server  // nil while connections are refused or after Close
	srvDone   chan struct{} // closed when srv's Serve returns
	closed    bool
	down503   atomic.Bool // the mode is Down503
	serverTLS *tls.Config
	handler   http.Handler

	limits rateLimits
	reqLog requestLog

	dirURL    string
	port      int // of the HTTPS server
	httpPort  int
	tlsPort   int
	tlsRoots  *x509.CertPool
	roots     []*x509.Certificate
	rootPool  *x509.CertPool
	transport *http.Transport
	counts    counters

	closeOnce sync.Once
	closeErr  error
}

// New starts a CA configured by opts. The caller must Close it.
func New(opts Options) (*CA, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	opts.EABKeys = maps.Clone(opts.EABKeys)
	opts.Profiles = maps.Clone(opts.Profiles)
	opts.BlockedDomains = slices.Clone(opts.BlockedDomains)

	c := &CA{
		opts:   opts,
		logger: logger,
		eab:    maps.Clone(opts.EABKeys),
		counts: newCounters(),
		reqLog: newRequestLog(requestLogSize),
	}
	ports, err := pickPorts(opts.HTTPPort, opts.TLSPort)
	if err != nil {
		return nil, err
	}
	c.httpPort, c.tlsPort = ports[0], ports[1]
	if c.dns, err = NewDNSServer(); err != nil {
		return nil, err
	}
	if err := c.build(); err != nil {
		_ = c.dns.Close()
		return nil, err
	}
	if err := c.serve(); err != nil {
		_ = c.dns.Close()
		return nil, err
	}
	return c, nil
}

// check validates opts.
func (o *Options) check() error {
	var errs []error
	inRange := func(name string, v, lo, hi int) {
		if v < lo || v > hi {
			errs = append(errs, fmt.Errorf("%s %d out of range [%d, %d]", name, v, lo, hi))
		}
	}
	inRange("HTTPPort", o.HTTPPort, 0, 65535)
	inRange("TLSPort", o.TLSPort, 0, 65535)
	inRange("NonceRejectPercent", o.NonceRejectPercent, 0, 100)
	inRange("AuthzReusePercent", o.AuthzReusePercent, 0, 100)
	inRange("ChainLength", o.ChainLength, 0, 16)
	inRange("AlternateRoots", o.AlternateRoots, 0, 16)
	inRange("RetryAfterAuthz", o.RetryAfterAuthz, 0, 1<<20)
	inRange("RetryAfterOrder", o.RetryAfterOrder, 0, 1<<20)
	inRange("VASleepMax", o.VASleepMax, 0, 3600)
	inRange("OrdersPerPage", o.OrdersPerPage, 0, 1<<20)
	switch o.KeyAlgorithm {
	case "", "ecdsa", "rsa", "mldsa":
	default:
		errs = append(errs, fmt.Errorf("unknown KeyAlgorithm %q", o.KeyAlgorithm))
	}
	for name, d := range o.Profiles {
		if name == "" || d < 0 {
			errs = append(errs, fmt.Errorf("invalid profile %q: %v", name, d))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("testpebble: options: %w", err)
	}
	return nil
}

// pickPorts returns the requested ports, replacing each 0 with a free
// loopback TCP port. The listeners that pick the free ports are all open at
// once, so the ports picked differ from each other, and each is reserved
// (see reserve) before its listener closes.
func pickPorts(ports ...int) ([]int, error) {
	out := make([]int, len(ports))
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	for i, p := range ports {
		if p != 0 {
			out[i] = p
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("testpebble: pick a free port: %w", err)
		}
		lns = append(lns, ln)
		out[i] = ln.Addr().(*net.TCPAddr).Port
	}
	for _, ln := range lns {
		if err := reserve(ln); err != nil {
			return nil, fmt.Errorf("testpebble: reserve port %s: %w", ln.Addr(), err)
		}
	}
	return out, nil
}

// reserve keeps the port of ln from being handed out again once ln is
// closed, until the test listens on it itself. Without it, a port picked
// and released could be taken in the meantime by any other socket on the
// machine (a listener on port 0, or an outgoing connection's local port),
// and the test's own Listen would fail with "address already in use" (seen
// about once in ten runs of a busy test suite).
//
// It connects to ln and closes the accepted end first, which leaves that end
// in TIME_WAIT on the port for about a minute. Meanwhile the kernel picks
// the port for no bind to port 0 and no outgoing connection, but a listener
// that sets SO_REUSEADDR, as net.Listen does on Unix, can still bind it. On
// Windows, whose listeners do not set it, nothing is reserved.
func reserve(ln net.Listener) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	client, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
	if err != nil {
		return err
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		return err
	}
	if err := server.Close(); err != nil {
		return err
	}
	// Wait for the server's FIN, so that the server's end closes first.
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		return fmt.Errorf("read after the server closed: got %v, want EOF", err)
	}
	return nil
}

// DirectoryURL returns the URL of the ACME directory,
// https://127.0.0.1:PORT/dir.
func (c *CA) DirectoryURL() string { return c.dirURL }

// HTTPClient returns a new client that trusts only the CA's HTTPS server
// certificate, with a 30-second overall timeout. All clients of a CA share
// one transport, whose idle connections Close closes.
func (c *CA) HTTPClient() *http.Client {
	return &http.Client{Transport: c.transport, Timeout: 30 * time.Second}
}

// TLSRoots returns a new pool holding the CA's HTTPS server certificate.
func (c *CA) TLSRoots() *x509.CertPool { return c.tlsRoots.Clone() }

// Roots returns the roots that issued certificates chain to: the default
// chain's root first, then the alternate roots in order.
func (c *CA) Roots() []*x509.Certificate {
	return append([]*x509.Certificate(nil), c.roots...)
}

// RootPool returns a new pool holding every issuing root, to verify the
// chains of issued certificates.
func (c *CA) RootPool() *x509.CertPool { return c.rootPool.Clone() }

// HTTPPort returns the port the validation authority connects to for
// http-01.
func (c *CA) HTTPPort() int { return c.httpPort }

// TLSPort returns the port the validation authority connects to for
// tls-alpn-01.
func (c *CA) TLSPort() int { return c.tlsPort }

// DNS returns the mock DNS server the validation authority resolves names
// and dns-01 TXT records with.
func (c *CA) DNS() *DNSServer { return c.dns }

// Requests returns how many requests reached the CA for endpoint: one of
// "directory", "newNonce", "newAccount", "newOrder", "order", "finalize",
// "authz", "challenge", "certificate", "revokeCert", "keyChange", "account",
// "renewalInfo", "orders" (an account's order list), "management" or
// "other". An unknown name counts 0. Requests answered by [Options.Wrap]
// are counted too.
func (c *CA) Requests(endpoint string) int { return c.counts.get(endpoint) }

// RequestCounts returns a copy of the request counters that are not zero,
// keyed by the endpoint names of [CA.Requests].
func (c *CA) RequestCounts() map[string]int { return c.counts.snapshot() }

// ResetCounts sets every request counter to zero.
func (c *CA) ResetCounts() { c.counts.reset() }

// Close stops the HTTPS server (closing its connections at once) and the DNS
// server, and waits for their goroutines. Pebble's validation authority
// goroutines keep running: Pebble offers no way to stop them. Calling Close
// more than once returns the first result.
func (c *CA) Close() error {
	c.closeOnce.Do(func() {
		var errs []error
		c.srvMu.Lock()
		c.closed = true
		if err := c.stopLocked(false); err != nil {
			errs = append(errs, err)
		}
		c.srvMu.Unlock()
		c.transport.CloseIdleConnections()
		if err := c.dns.Close(); err != nil {
			errs = append(errs, err)
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}
