package acme

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// response is a fully read, size-limited HTTP response.
type response struct {
	status     int
	header     http.Header
	body       []byte
	location   string
	retryAfter time.Duration
}

// ErrResponseTooLarge is returned when a response body exceeds the size
// limit for its kind.
var ErrResponseTooLarge = errors.New("acme: response body too large")

// do sends req and reads at most limit bytes of the body. Every response's
// Replay-Nonce feeds the pool.
func (c *Client) do(req *http.Request, limit int64) (*response, error) {
	c.setUserAgent(req)
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, fmt.Errorf("acme: %s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	if n := resp.Header.Get("Replay-Nonce"); n != "" {
		c.putNonce(n)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("acme: reading response to %s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	r := &response{
		status: resp.StatusCode,
		header: resp.Header,
		body:   body,
	}
	r.retryAfter, _ = ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	// Only a success's Location is used: that of an error answer, which
	// no caller reads, must not turn the CA's problem into a URL error.
	if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode < 300 {
		u, err := resolveURL(req.URL, loc)
		if err != nil {
			return nil, fmt.Errorf("acme: bad Location header: %w", err)
		}
		r.location = u
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		target := resp.Header.Get("Location")
		if u, err := req.URL.Parse(target); err == nil {
			target = u.Redacted()
		}
		return nil, fmt.Errorf("%w: %s %s answered %d to %q", ErrRedirect, req.Method, req.URL.Redacted(), resp.StatusCode, clipString(target, 200))
	}
	if int64(len(body)) > limit {
		if resp.StatusCode >= 400 {
			return nil, &Problem{Status: resp.StatusCode, Detail: fmt.Sprintf("error response body larger than %d bytes", limit), RetryAfter: r.retryAfter}
		}
		return nil, fmt.Errorf("%w: more than %d bytes from %s", ErrResponseTooLarge, limit, req.URL.Redacted())
	}
	if resp.StatusCode >= 400 {
		return r, r.problem()
	}
	return r, nil
}

// setUserAgent sets the User-Agent every ACME request must carry.
func (c *Client) setUserAgent(req *http.Request) {
	ua := "tlsmint-acme/1"
	if c.UserAgent != "" {
		ua = c.UserAgent + " " + ua
	}
	req.Header.Set("User-Agent", ua)
}

// problem turns an error response into a *Problem: the server's problem
// document when there is one, otherwise one synthesised from the status.
func (r *response) problem() *Problem {
	p := &Problem{}
	ct, _, _ := mime.ParseMediaType(r.header.Get("Content-Type"))
	if ct == "application/problem+json" || ct == "application/json" {
		if err := json.Unmarshal(r.body, p); err != nil {
			p = &Problem{Detail: "malformed problem document: " + err.Error()}
		}
	}
	if p.Type == "" {
		switch {
		case r.status == http.StatusTooManyRequests:
			p.Type = ErrRateLimited.Type
		case r.status >= 500:
			p.Type = ErrServerInternal.Type
		}
		if p.Detail == "" {
			p.Detail = fmt.Sprintf("unexpected %s response: %s", orDash(ct), snippet(r.body))
		}
	}
	if p.Status == 0 || p.Status != r.status {
		p.Status = r.status
	}
	p.RetryAfter = r.retryAfter
	return p
}

func orDash(s string) string {
	if s == "" {
		return "untyped"
	}
	return s
}

// snippet returns a short, printable excerpt of an unexpected body.
func snippet(b []byte) string {
	const max = 120
	if len(b) > max {
		b = b[:max]
	}
	s := strings.Map(func(r rune) rune {
		if r == utf8.RuneError || r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, string(b))
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "(empty body)"
	}
	return fmt.Sprintf("%q", s)
}

// resolveURL resolves ref against base and requires https.
func resolveURL(base *url.URL, ref string) (string, error) {
	u, err := base.Parse(ref)
	if err != nil {
		return "", err
	}
	if err := checkURL(u.String()); err != nil {
		return "", err
	}
	return u.String(), nil
}

// ErrInsecureURL is returned when the server hands out a URL that is not an
// absolute https URL.
var ErrInsecureURL = errors.New("acme: server URL is not absolute https")

// checkURL requires an absolute https URL with a host.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrInsecureURL, s, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%w: %q", ErrInsecureURL, s)
	}
	return nil
}

// get sends an unauthenticated GET (used for the directory and ARI).
func (c *Client) get(ctx context.Context, op, u string, limit int64) (resp *response, err error) {
	if err := checkURL(u); err != nil {
		return nil, err
	}
	start := time.Now()
	retries := 0
	defer func() { c.observe(op, nil, start, resp, retries, err) }()
	for ; ; retries++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, fmt.Errorf("acme: %w", err)
		}
		resp, err := c.do(req, limit)
		if ok, _ := transient(ctx, err); !ok || retries == MaxTransientRetries {
			return resp, err
		}
		c.logger().DebugContext(ctx, "acme: transient failure, retrying", "url", u, "retry", retries+1, "err", err)
		if werr := retryWait(ctx, retries); werr != nil {
			return resp, err
		}
	}
}

// decodeJSON decodes a response body into v, refusing anything but a JSON
// object.
func decodeJSON(r *response, v any, what string) error {
	body := bytes.TrimSpace(r.body)
	if len(body) == 0 || body[0] != '{' {
		return malformed(what, nil, "expected a JSON object, got %s", snippet(r.body))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return malformed(what, err, "%v", err)
	}
	return nil
}

// ErrMalformedResponse is matched (errors.Is) by the error returned when a
// CA's answer cannot be used: a body that is not a JSON object or not of
// the expected shape, an unknown status, a required member or Location
// header missing. Its message says what was wrong, as "acme: malformed
// <what>: <why>".
var ErrMalformedResponse = errors.New("acme: malformed response")

// malformedError is an ErrMalformedResponse about one kind of object.
type malformedError struct {
	msg   string
	cause error // the decoding error, if any
}

func (e *malformedError) Error() string { return e.msg }

func (e *malformedError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrMalformedResponse}
	}
	return []error{ErrMalformedResponse, e.cause}
}

// malformed returns an error matching ErrMalformedResponse, reading
// "acme: malformed <what>: <format…>", that also wraps cause.
func malformed(what string, cause error, format string, args ...any) error {
	return &malformedError{msg: "acme: malformed " + what + ": " + fmt.Sprintf(format, args...), cause: cause}
}
