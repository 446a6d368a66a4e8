package testpebble

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// DownMode is how a [CA] answers, as set by [CA.SetDown].
type DownMode int

const (
	// Up answers normally. It is the zero value and the mode of a new CA.
	Up DownMode = iota
	// Down503 answers every ACME request, the directory included, with
	// status 503 and a problem document of type serverInternal that carries
	// a fresh Replay-Nonce (valid once the CA is up again) and no
	// Retry-After, as a CA in an outage would. Pebble's management paths
	// keep working. The requests are counted and logged.
	Down503
	// Refuse closes the listener and every open connection, so that every
	// connection to the CA is refused until the mode changes again; the
	// CA's out-of-band methods (Revoke, Reset, …) keep working.
	Refuse
)

// String returns the mode's name.
func (m DownMode) String() string {
	switch m {
	case Up:
		return "Up"
	case Down503:
		return "Down503"
	case Refuse:
		return "Refuse"
	}
	return "DownMode(" + strconv.Itoa(int(m)) + ")"
}

// SetDown makes the CA answer as mode says from now on. Leaving [Refuse]
// listens again on the same port, so [CA.DirectoryURL] stays the same; it
// fails only if another socket has taken the port meanwhile, which is
// unlikely: while connections are refused, the port is kept from the
// kernel's automatic choices as the ports of [Options.HTTPPort] are. Requests already being answered when the
// mode changes finish as they started, except under Refuse, which closes
// their connections. SetDown fails after [CA.Close].
func (c *CA) SetDown(mode DownMode) error {
	if mode < Up || mode > Refuse {
		return fmt.Errorf("testpebble: set down: unknown mode %v", mode)
	}
	c.srvMu.Lock()
	defer c.srvMu.Unlock()
	if c.closed {
		return errors.New("testpebble: set down: the CA is closed")
	}
	switch mode {
	case Up, Down503:
		c.down503.Store(mode == Down503)
		if c.srv == nil {
			if err := c.listenLocked(); err != nil {
				return fmt.Errorf("testpebble: set down %v: %w", mode, err)
			}
		}
	case Refuse:
		if err := c.stopLocked(true); err != nil {
			return fmt.Errorf("testpebble: set down %v: %w", mode, err)
		}
		c.transport.CloseIdleConnections()
	}
	return nil
}

// RateLimit makes the CA answer the next n requests to endpoint (a name
// of [CA.Requests] other than "management") with status 429 and a problem
// document of type rateLimited, carrying a fresh Replay-Nonce and a
// Retry-After of retryAfter in whole seconds, rounded up (none when
// retryAfter is zero or less). A negative n limits every request until
// RateLimit is called again for endpoint with n == 0, which clears the
// limit; a new call replaces the previous limit of endpoint. The limited
// requests are counted and logged like the others, and [Down503] takes
// precedence (a request it answers does not use up the limit).
func (c *CA) RateLimit(endpoint string, retryAfter time.Duration, n int) error {
	if endpoint == "management" || !slices.Contains(endpointNames, endpoint) {
		return fmt.Errorf("testpebble: rate limit: unknown endpoint %q", endpoint)
	}
	c.limits.set(endpoint, retryAfter, n)
	return nil
}

// rateLimits holds the limits set by [CA.RateLimit]. Its zero value has
// none.
type rateLimits struct {
	mu sync.Mutex
	m  map[string]rateLimit
}

type rateLimit struct {
	retryAfter time.Duration
	left       int // < 0: until cleared
}

func (l *rateLimits) set(endpoint string, retryAfter time.Duration, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n == 0 {
		delete(l.m, endpoint)
		return
	}
	if l.m == nil {
		l.m = make(map[string]rateLimit)
	}
	l.m[endpoint] = rateLimit{retryAfter: retryAfter, left: n}
}

// take reports whether a request to endpoint is limited, using up one of
// its limit, and the Retry-After to send.
func (l *rateLimits) take(endpoint string) (limited bool, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.m[endpoint]
	if !ok {
		return false, 0
	}
	if lim.left > 0 {
		lim.left--
		if lim.left == 0 {
			delete(l.m, endpoint)
		} else {
			l.m[endpoint] = lim
		}
	}
	return true, lim.retryAfter
}

// faults answers with the faults of [CA.SetDown] and [CA.RateLimit], and
// passes the other requests to next.
func (c *CA) faults(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.down503.Load() {
			c.writeProblem(w, r, http.StatusServiceUnavailable, "serverInternal",
				"testpebble: the CA is down (SetDown)")
			return
		}
		if limited, after := c.limits.take(classify(r.URL.Path)); limited {
			if after > 0 {
				secs := (after + time.Second - 1) / time.Second
				w.Header().Set("Retry-After", strconv.FormatInt(int64(secs), 10))
			}
			c.writeProblem(w, r, http.StatusTooManyRequests, "rateLimited",
				"testpebble: too many requests (RateLimit)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// problemDoc is an RFC 7807 problem document.
type problemDoc struct {
	Type   string `json:"type"`
	Detail string `json:"detail"`
	Status int    `json:"status"`
}

// writeProblem answers with status and an ACME problem document of type typ
// (without its URN prefix), with a fresh nonce of the current backend.
func (c *CA) writeProblem(w http.ResponseWriter, r *http.Request, status int, typ, detail string) {
	body, err := json.Marshal(problemDoc{Type: "urn:ietf:params:acme:error:" + typ, Detail: detail, Status: status})
	if err != nil {
		panic(err) // cannot happen: plain strings and an int
	}
	h := w.Header()
	if nonce := c.cur.Load().nonce(); nonce != "" {
		h.Set("Replay-Nonce", nonce)
	}
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}
