package acme

import (
	"context"
	"crypto"
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
	// DefaultPollInterval is the first wait between two polls of an order or
	// authorization when the server sends no Retry-After.
	DefaultPollInterval = 20 * time.Millisecond
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

	// HTTPClient sends the requests. Nil means a client with sensible
	// timeouts. Its Transport decides which CAs are trusted.
	HTTPClient *http.Client

	// UserAgent is added to the User-Agent header of every request.
	UserAgent string

	// Logger receives debug logs of requests and retries. Nil means silent.
	// Key material is never logged.
	Logger *slog.Logger

	// PollInterval is the first wait between polls of a pending object when
	// the server does not send Retry-After; zero means DefaultPollInterval.
	// Later waits grow by half each time up to MaxPollInterval.
	PollInterval time.Duration

	// MaxPollInterval caps the wait between polls; zero means
	// DefaultMaxPollInterval. A Retry-After from the server is obeyed even
	// when it is longer.
	MaxPollInterval time.Duration

	mu        sync.Mutex
	dir       *Directory
	nonces    []string
	kid       string        // account URL learned from Register/LookupAccount
	rolledKey crypto.Signer // key set by RolloverKey
	defHTTP   *http.Client
}

// ErrUnsupportedKey is returned when the account or certificate key is of a
// type or size that ACME servers do not accept.
var ErrUnsupportedKey = errors.New("acme: unsupported key type")

// ErrNoAccount is returned by calls that need an account URL when the client
// has none: call Register or LookupAccount first, or set AccountURL.
var ErrNoAccount = errors.New("acme: no account URL: call Register or LookupAccount first")

func (c *Client) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.defHTTP == nil {
		c.defHTTP = &http.Client{
			Timeout: 60 * time.Second,
			Transport: &http.Transport{
				Proxy:                 http.ProxyFromEnvironment,
				TLSHandshakeTimeout:   15 * time.Second,
				ResponseHeaderTimeout: 30 * time.Second,
				IdleConnTimeout:       90 * time.Second,
				MaxIdleConnsPerHost:   4,
				ForceAttemptHTTP2:     true,
			},
		}
	}
	return c.defHTTP
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

func (c *Client) pollIntervals() (first, max time.Duration) {
	first, max = c.PollInterval, c.MaxPollInterval
	if first <= 0 {
		first = DefaultPollInterval
	}
	if max <= 0 {
		max = DefaultMaxPollInterval
	}
	if max < first {
		max = first
	}
	return first, max
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// poller yields the waits between polls: it starts at the client's poll
// interval and grows by half up to the maximum, and obeys Retry-After.
type poller struct {
	next, max time.Duration
}

func (c *Client) newPoller() *poller {
	first, max := c.pollIntervals()
	return &poller{next: first, max: max}
}

func (p *poller) wait(ctx context.Context, retryAfter time.Duration) error {
	d := p.next
	if retryAfter > 0 {
		d = retryAfter
	}
	p.next += p.next / 2
	if p.next > p.max {
		p.next = p.max
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		// Waiting past the deadline is pointless: fail now, as the
		// context would, so the caller learns why at once.
		return context.DeadlineExceeded
	}
	return sleep(ctx, d)
}
