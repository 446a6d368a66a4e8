package revocation

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Defaults for the zero values of [Checker]'s fields.
const (
	// DefaultCacheFor is how long a fetched CRL is used before it is
	// fetched again.
	DefaultCacheFor = time.Hour
	// DefaultRetryAfter is how long a CRL that could not be fetched is not
	// asked for again.
	DefaultRetryAfter = 5 * time.Minute
	// DefaultMaxSize bounds a CRL's body. Let's Encrypt shards its CRLs
	// to well under this.
	DefaultMaxSize = 20 << 20
	// DefaultTimeout bounds one fetch when HTTPClient is nil.
	DefaultTimeout = 15 * time.Second
)

// Errors of [Checker.Check], each wrapped with the CRL's URL and the cause.
var (
	// ErrFetch: the CRL could not be fetched (network, status, redirect,
	// too large).
	ErrFetch = errors.New("revocation: fetching the CRL failed")
	// ErrInvalidCRL: what was fetched is not a current CRL of the issuer
	// (it does not parse, its signature does not verify, another CA issued
	// it, or its NextUpdate has passed).
	ErrInvalidCRL = errors.New("revocation: invalid CRL")
	// ErrNoIssuer: the certificate names a CRL but no issuer was given to
	// verify it with.
	ErrNoIssuer = errors.New("revocation: no issuer certificate to verify the CRL")
)

// A Checker looks certificates up in the CRLs they name, with a cache.
// The zero value is ready to use.
type Checker struct {
	// HTTPClient fetches the CRLs. Nil means a client with DefaultTimeout
	// that follows no redirects. Whatever its CheckRedirect, a redirect
	// is never followed: it is an ErrFetch.
	HTTPClient *http.Client
	// MaxSize bounds a CRL's body in bytes. Zero means DefaultMaxSize.
	MaxSize int64
	// CacheFor is how long a fetched CRL is used, at most until its
	// NextUpdate. Zero means DefaultCacheFor (an hour).
	CacheFor time.Duration
	// RetryAfter is how long a CRL that could not be fetched, or was
	// invalid, is not asked for again (checks get the same error). Zero
	// means DefaultRetryAfter (five minutes).
	RetryAfter time.Duration
	// Now is the clock of the cache. Nil means time.Now.
	Now func() time.Time

	mu      sync.Mutex
	entries map[string]*entry // by URL and issuer key
	fetches int64
}

// entry is one CRL URL's cached state; ready is closed once the fetch
// that fills it ends.
type entry struct {
	ready   chan struct{}
	until   time.Time
	err     error
	issuer  []byte // the raw subject of the CRL's issuer
	revoked map[string]x509.RevocationListEntry
}

// Status is what Check found.
type Status struct {
	// Checked reports that the certificate names at least one CRL and
	// every one named was read (Revoked is then the answer).
	Checked bool
	// Revoked reports that a CRL lists the certificate's serial.
	Revoked bool
	// RevokedAt and Reason are the CRL entry's revocation time and
	// reason code (RFC 5280 5.3.1: 1 keyCompromise, 4 superseded, …;
	// 0 unspecified), when Revoked.
	RevokedAt time.Time
	Reason    int
	// CRL is the URL of the list that says so (when Revoked), or of the
	// last list read.
	CRL string
	// Serial is the certificate's serial, in lower-case hex.
	Serial string
}

// Fetches returns how many CRL fetches the Checker has made, for tests
// and metrics.
func (c *Checker) Fetches() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fetches
}

// Check looks leaf up in the CRLs its CRLDistributionPoints name (only
// http and https ones), each verified with issuer. A certificate that
// names none is not Checked, with no error. The error wraps ErrFetch,
// ErrInvalidCRL or ErrNoIssuer; a CRL that lists leaf is reported even
// when another named one failed.
func (c *Checker) Check(ctx context.Context, leaf, issuer *x509.Certificate) (Status, error) {
	st := Status{Serial: fmt.Sprintf("%x", leaf.SerialNumber)}
	var urls []string
	for _, u := range leaf.CRLDistributionPoints {
		if p, err := url.Parse(u); err == nil && (p.Scheme == "http" || p.Scheme == "https") && p.Host != "" {
			urls = append(urls, u)
		}
	}
	if len(urls) == 0 {
		return st, nil
	}
	if issuer == nil {
		return st, fmt.Errorf("%w for %s", ErrNoIssuer, urls[0])
	}
	var errs []error
	for _, u := range urls {
		e, err := c.get(ctx, u, issuer)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		st.CRL = u
		if !bytes.Equal(e.issuer, issuer.RawSubject) {
			errs = append(errs, fmt.Errorf("%w: %s is issued by another CA", ErrInvalidCRL, u))
			continue
		}
		if r, ok := e.revoked[serialKey(leaf.SerialNumber)]; ok {
			st.Checked, st.Revoked, st.RevokedAt, st.Reason = true, true, r.RevocationTime, r.ReasonCode
			return st, nil
		}
	}
	if len(errs) > 0 {
		return st, errors.Join(errs...)
	}
	st.Checked = true
	return st, nil
}

func serialKey(n *big.Int) string { return string(n.Bytes()) }

func (c *Checker) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// get returns the CRL at u, from the cache or fetched once for every
// concurrent caller. The fetch runs under a context of its own (bounded
// by the client's timeout), so that one caller giving up does not fail
// the others; ctx bounds only this caller's wait.
func (c *Checker) get(ctx context.Context, u string, issuer *x509.Certificate) (*entry, error) {
	// The issuer's key is part of the key: a CRL verified with one
	// issuer's key says nothing about another's certificates.
	k := u + "\x00" + string(issuer.RawSubjectPublicKeyInfo)
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[string]*entry{}
	}
	e := c.entries[k]
	fresh := e != nil
	if fresh {
		select {
		case <-e.ready:
			fresh = c.now().Before(e.until)
		default: // a fetch is under way: wait for it
		}
	}
	if !fresh {
		e = &entry{ready: make(chan struct{})}
		c.entries[k] = e
		c.fetches++
		go c.fill(e, u, issuer)
	}
	c.mu.Unlock()
	select {
	case <-e.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if e.err != nil {
		return nil, e.err
	}
	return e, nil
}

// fill fetches, verifies and indexes the CRL at u into e. It runs on a
// goroutine of its own that ends with the fetch (bounded by the client's
// timeout, else DefaultTimeout); a panic in it becomes e's error.
func (c *Checker) fill(e *entry, u string, issuer *x509.Certificate) {
	retry := c.RetryAfter
	if retry <= 0 {
		retry = DefaultRetryAfter
	}
	defer close(e.ready)
	defer func() {
		if p := recover(); p != nil {
			e.err, e.until = fmt.Errorf("%w: %s: panic: %v", ErrFetch, u, p), c.now().Add(retry)
		}
	}()
	der, err := c.fetch(u)
	if err != nil {
		e.err, e.until = err, c.now().Add(retry)
		return
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		e.err, e.until = fmt.Errorf("%w: %s: %w", ErrInvalidCRL, u, err), c.now().Add(retry)
		return
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		e.err, e.until = fmt.Errorf("%w: %s: %w", ErrInvalidCRL, u, err), c.now().Add(retry)
		return
	}
	now := c.now()
	if !crl.NextUpdate.IsZero() && !now.Before(crl.NextUpdate) {
		// A list past its next update may have been replaced by one that
		// revokes more: an old, validly signed copy says nothing now.
		e.err, e.until = fmt.Errorf("%w: %s: stale: its next update was due %s", ErrInvalidCRL, u, crl.NextUpdate.UTC().Format(time.RFC3339)), now.Add(retry)
		return
	}
	e.issuer = crl.RawIssuer
	e.revoked = make(map[string]x509.RevocationListEntry, len(crl.RevokedCertificateEntries))
	for _, r := range crl.RevokedCertificateEntries {
		e.revoked[serialKey(r.SerialNumber)] = r
	}
	cacheFor := c.CacheFor
	if cacheFor <= 0 {
		cacheFor = DefaultCacheFor
	}
	e.until = now.Add(cacheFor)
	if !crl.NextUpdate.IsZero() && crl.NextUpdate.Before(e.until) {
		e.until = crl.NextUpdate // not used past its next update
	}
}

// errRedirect stops a redirect.
var errRedirect = errors.New("redirect not followed")

// fetch reads the body at u, bounded, following no redirect.
func (c *Checker) fetch(u string) ([]byte, error) {
	hc := c.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: DefaultTimeout}
	}
	noRedirect := *hc
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return errRedirect }
	ctx := context.Background()
	if hc.Timeout <= 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrFetch, u, err)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrFetch, u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: %s: HTTP %d", ErrFetch, u, resp.StatusCode)
	}
	max := c.MaxSize
	if max <= 0 {
		max = DefaultMaxSize
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrFetch, u, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrFetch, u, max)
	}
	return b, nil
}

// ReasonText names an RFC 5280 reason code: "keyCompromise",
// "superseded", …; "unspecified" for 0 and unknown codes.
func ReasonText(code int) string {
	switch code {
	case 1:
		return "keyCompromise"
	case 2:
		return "cACompromise"
	case 3:
		return "affiliationChanged"
	case 4:
		return "superseded"
	case 5:
		return "cessationOfOperation"
	case 6:
		return "certificateHold"
	case 8:
		return "removeFromCRL"
	case 9:
		return "privilegeWithdrawn"
	case 10:
		return "aACompromise"
	}
	return "unspecified"
}
