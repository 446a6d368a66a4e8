package acme

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// Well-known directory URLs.
const (
	LetsEncryptProduction = "https://acme-v02.api.letsencrypt.org/directory"
	LetsEncryptStaging    = "https://acme-staging-v02.api.letsencrypt.org/directory"
)

// Default limits applied to untrusted responses and polling.
const (
	// DefaultPollInterval is the first wait before polling an order or
	// authorization when the server sends no Retry-After and the client has
	// no history of the server's timing.
	DefaultPollInterval = 100 * time.Millisecond
	// DefaultMaxPollInterval caps the growing wait between two polls.
	DefaultMaxPollInterval = 2 * time.Second

	maxJSONBody  = 1 << 20 // 1 MiB for any JSON object
	maxCertBody  = 1 << 20 // 1 MiB for a PEM certificate chain
	maxChainLen  = 10      // certificates in one chain
	maxAlternate = 8       // alternate chains followed
	maxNonces    = 64      // nonces kept in the pool
	maxTries     = 10      // attempts of one request when the nonce is rejected
)

// A Client talks to one ACME server on behalf of one account.
//
// The zero value plus DirectoryURL and Key is ready to use. Set the exported
// fields before the first call and do not change them afterwards. A Client is
// safe for concurrent use by multiple goroutines; it keeps one nonce pool and
// fetches the directory once.
type Client struct {
	// DirectoryURL is the ACME directory, for example [LetsEncryptProduction].
	// It must be an https URL.
	DirectoryURL string

	// Key is the account key. ECDSA P-256 (ES256, preferred), P-384 (ES384)
	// and RSA of at least 2048 bits (RS256) are supported; any other key is
	// refused before a request is made.
	Key crypto.Signer

	// AccountURL is the account's URL (its "kid"), if already known. When
	// empty, [Client.Register] or [Client.LookupAccount] must be called
	// before any request that needs the account.
	AccountURL string

	// HTTPClient sends the requests. Nil means [NewHTTPClient](RootCAs):
	// the documented default timeouts. Its Transport decides which CAs are
	// trusted. Whatever its CheckRedirect says, redirects are never
	// followed: a 3xx response is an error that names its target
	// ([ErrRedirect]), since a signed request must reach exactly the URL
	// it was signed for.
	HTTPClient *http.Client

	// RootCAs are the roots trusted for the CA's HTTPS server when
	// HTTPClient is nil, for a private CA such as step-ca. Nil means the
	// system's roots. Ignored when HTTPClient is set.
	RootCAs *x509.CertPool

	// Observer, if set, is told of every exchange with the CA (see
	// [Exchange]), for audit trails and metrics. Nil means none.
	Observer Observer

	// UserAgent is added to the User-Agent header of every request.
	UserAgent string

	// Logger receives debug logs of requests and retries. Nil means silent.
	// Key material is never logged.
	Logger *slog.Logger

	// PollInterval is the first wait before polling a pending
	// authorization or order while the client has no history of this
	// server's timing; zero means DefaultPollInterval. Later waits grow by
	// half each time up to MaxPollInterval. Once the client has seen the
	// server validate and finalize, it polls first at about the time the
	// server took recently (see [Client.PollTimings]), so a CA that takes
	// two seconds is polled about once, and one that takes milliseconds is
	// not kept waiting. A Retry-After from the server is always obeyed.
	PollInterval time.Duration

	// MaxPollInterval caps the growing wait between polls; zero means
	// DefaultMaxPollInterval. It does not cap the first, learned waits (a
	// CA that takes five seconds is first polled after about five), and a
	// Retry-After from the server is obeyed even when it is longer.
	MaxPollInterval time.Duration

	mu        sync.Mutex
	dir       *Directory
	nonces    []string
	kid       string        // account URL learned from Register/LookupAccount
	rolledKey crypto.Signer // key set by RolloverKey
	httpc     *http.Client  // HTTPClient (or the default) with redirects refused
	timing    pollTiming
}

// ErrUnsupportedKey is returned when the account or certificate key is of a
// type or size that ACME servers do not accept.
var ErrUnsupportedKey = errors.New("acme: unsupported key type")

// ErrNoAccount is returned by calls that need an account URL when the client
// has none: call Register or LookupAccount first, or set AccountURL.
var ErrNoAccount = errors.New("acme: no account URL: call Register or LookupAccount first")

// Timeouts of the client [NewHTTPClient] returns.
const (
	// DefaultHTTPTimeout bounds a whole request, body included.
	DefaultHTTPTimeout = 60 * time.Second
	// DefaultTLSHandshakeTimeout bounds the TLS handshake with the CA.
	DefaultTLSHandshakeTimeout = 15 * time.Second
	// DefaultResponseHeaderTimeout bounds the wait for response headers.
	DefaultResponseHeaderTimeout = 30 * time.Second
)

// NewHTTPClient returns the HTTP client a [Client] uses when its HTTPClient
// is nil, for callers that want to change it (a proxy, a dialer) without
// losing the defaults: a whole request is bounded by DefaultHTTPTimeout,
// the TLS handshake by DefaultTLSHandshakeTimeout and the wait for headers
// by DefaultResponseHeaderTimeout; idle connections are closed after 90 s;
// the proxy comes from the environment; HTTP/2 is used when offered;
// redirects are not followed. roots are the trusted roots for the CA's
// server certificate; nil means the system's.
func NewHTTPClient(roots *x509.CertPool) *http.Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		TLSHandshakeTimeout:   DefaultTLSHandshakeTimeout,
		ResponseHeaderTimeout: DefaultResponseHeaderTimeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
		ForceAttemptHTTP2:     true,
	}
	if roots != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Timeout: DefaultHTTPTimeout, Transport: tr, CheckRedirect: refuseRedirect}
}

// ErrRedirect is returned (wrapped, with the target) when the CA answers
// with a redirect, which the client never follows.
var ErrRedirect = errors.New("acme: server redirected the request")

func refuseRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// httpClient returns the client requests go through: HTTPClient (or the
// default), copied once with CheckRedirect replaced so that no redirect is
// ever followed, whatever the caller's client says.
func (c *Client) httpClient() *http.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.httpc == nil {
		if c.HTTPClient != nil {
			hc := *c.HTTPClient
			hc.CheckRedirect = refuseRedirect
			c.httpc = &hc
		} else {
			c.httpc = NewHTTPClient(c.RootCAs)
		}
	}
	return c.httpc
}

func (c *Client) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return discardLogger
}

var discardLogger = slog.New(slog.DiscardHandler)

// accountKey returns the current account key: the rolled-over one if
// RolloverKey succeeded, else Key.
func (c *Client) accountKey() crypto.Signer {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rolledKey != nil {
		return c.rolledKey
	}
	return c.Key
}

// accountID returns the account URL used as JWS "kid".
func (c *Client) accountID() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kid != "" {
		return c.kid, nil
	}
	if c.AccountURL != "" {
		return c.AccountURL, nil
	}
	return "", ErrNoAccount
}

func (c *Client) setAccountID(u string) {
	c.mu.Lock()
	c.kid = u
	c.mu.Unlock()
}
