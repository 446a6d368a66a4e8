package acme

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// ErrNoNonce is returned (wrapped, with the status) when the server's
// newNonce endpoint answers without a usable Replay-Nonce: none, or one
// that is not a base64url string of at most 256 characters.
var ErrNoNonce = errors.New("acme: no usable Replay-Nonce from newNonce")

// maxNonceLen bounds a nonce kept from a Replay-Nonce header.
const maxNonceLen = 256

// validNonce reports whether n is a nonce the client may send back: a
// non-empty base64url string (RFC 8555, section 6.5.1, which has clients
// ignore any other Replay-Nonce value) of at most maxNonceLen characters.
func validNonce(n string) bool {
	if n == "" || len(n) > maxNonceLen {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// putNonce adds a nonce from a Replay-Nonce header to the pool, unless it
// is not a valid nonce (which is ignored). The pool is bounded; the oldest
// nonces are dropped first since they are the likeliest to have expired.
func (c *Client) putNonce(n string) {
	if !validNonce(n) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.nonces) >= maxNonces {
		c.nonces = c.nonces[1:]
	}
	c.nonces = append(c.nonces, n)
}

// nonce returns a nonce from the pool, or fetches one with HEAD newNonce when
// the pool is empty.
func (c *Client) nonce(ctx context.Context) (string, error) {
	c.mu.Lock()
	if n := len(c.nonces); n > 0 {
		v := c.nonces[n-1]
		c.nonces = c.nonces[:n-1]
		c.mu.Unlock()
		return v, nil
	}
	c.mu.Unlock()

	dir, err := c.Directory(ctx)
	if err != nil {
		return "", err
	}
	start := time.Now()
	for retries := 0; ; retries++ {
		n, err := c.fetchNonce(ctx, dir.NewNonce)
		if ok, _ := transient(ctx, err); !ok || retries == MaxTransientRetries {
			var ok *response
			if err == nil {
				ok = &response{status: http.StatusOK}
			}
			c.observe(OpNewNonce, nil, start, ok, retries, err)
			return n, err
		}
		c.logger().DebugContext(ctx, "acme: transient failure fetching a nonce, retrying", "retry", retries+1, "err", err)
		if werr := retryWait(ctx, retries); werr != nil {
			return "", err
		}
	}
}

// fetchNonce asks newNonce for a fresh nonce (HEAD).
func (c *Client) fetchNonce(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, url, nil)
	if err != nil {
		return "", fmt.Errorf("acme: %w", err)
	}
	c.setUserAgent(req)
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return "", fmt.Errorf("acme: fetching a nonce: %w", err)
	}
	resp.Body.Close()
	n := resp.Header.Get("Replay-Nonce")
	if resp.StatusCode >= 500 {
		// The Retry-After of a CA in an outage counts here as on any
		// answer: a long one is not retried within the call.
		after, _ := ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		return "", fmt.Errorf("acme: fetching a nonce: %w", &Problem{Type: ErrServerInternal.Type, Status: resp.StatusCode, Detail: "newNonce failed", RetryAfter: after})
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return "", fmt.Errorf("%w: HEAD %s answered %d", ErrRedirect, req.URL.Redacted(), resp.StatusCode)
	}
	if resp.StatusCode >= 400 || !validNonce(n) {
		return "", fmt.Errorf("%w: HTTP %d", ErrNoNonce, resp.StatusCode)
	}
	return n, nil
}
