package acme

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// putNonce adds a nonce from a Replay-Nonce header to the pool. The pool is
// bounded; the oldest nonces are dropped first since they are the likeliest
// to have expired.
func (c *Client) putNonce(n string) {
	if len(n) > 256 {
		return // nonces are short base64url strings; ignore junk
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
		return "", fmt.Errorf("acme: fetching a nonce: %w", &Problem{Type: ErrServerInternal.Type, Status: resp.StatusCode, Detail: "newNonce failed"})
	}
	if resp.StatusCode >= 400 || n == "" || len(n) > 256 {
		return "", fmt.Errorf("acme: fetching a nonce: HTTP %d without a usable Replay-Nonce", resp.StatusCode)
	}
	return n, nil
}
