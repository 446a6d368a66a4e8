package acme

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"syscall"
	"time"
)

// Transient failures inside one call are retried a few times, quickly,
// before the error reaches the caller.
const (
	// MaxTransientRetries is how often one request is repeated after a
	// transient failure: a 5xx answer, a connection reset or refused, a
	// timeout. Only requests that are safe to repeat (the directory, ARI,
	// newNonce, POST-as-GET) are repeated after the request may have
	// reached the server; a connection that was refused is retried for any
	// request, since nothing was sent.
	MaxTransientRetries = 3
	// transientBackoff is the first wait before a retry; it doubles, with
	// jitter.
	transientBackoff = 200 * time.Millisecond
	// maxTransientRetryAfter: a 5xx whose Retry-After asks for longer is
	// returned to the caller, whose back-off obeys it.
	maxTransientRetryAfter = 5 * time.Second
)

// transient reports whether err is worth repeating the request for, and
// whether the request may not have reached the server at all.
func transient(ctx context.Context, err error) (retry, unsent bool) {
	if err == nil || ctx.Err() != nil {
		return false, false
	}
	var p *Problem
	if errors.As(err, &p) {
		if p.Status >= 500 && p.RetryAfter <= maxTransientRetryAfter && !p.Is(ErrRateLimited) {
			return true, false
		}
		return false, false
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true, true
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.EPIPE) {
		return true, false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true, false
	}
	// HTTP/2 reports a reset stream or a closed connection with types of
	// its own that net/http does not export.
	msg := err.Error()
	for _, s := range []string{"stream error:", "server sent GOAWAY", "http2: client connection lost", "connection reset by peer"} {
		if strings.Contains(msg, s) {
			return true, false
		}
	}
	return false, false
}

// retryWait sleeps before retry number n (0-based).
func retryWait(ctx context.Context, n int) error {
	d := transientBackoff << n
	d = d/2 + time.Duration(rand.Int64N(int64(d)))
	return sleep(ctx, d)
}
