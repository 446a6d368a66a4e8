package solvers

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tlsmint/tlsmint/acme"
)

// HTTP01PathPrefix is the path under which http-01 challenges are served
// (RFC 8555, section 8.3).
const HTTP01PathPrefix = "/.well-known/acme-challenge/"

// DefaultCleanupTimeout bounds a CleanUp whose context has no deadline of
// its own, or was already cancelled: clean-up always runs under a context
// detached from the caller's, with this timeout.
const DefaultCleanupTimeout = 30 * time.Second

// HTTP01 answers http-01 challenges (RFC 8555, section 8.3). It is an
// [acme.Solver] and an [net/http.Handler]: Present stores the challenge,
// the handler serves it at /.well-known/acme-challenge/<token> until
// CleanUp removes it.
//
// The handler is strict. It answers only GET and HEAD requests for the exact
// path of a presented token (no escaped characters), whose Host header
// (port ignored, ASCII case-insensitive, IPv6 in brackets) names the
// challenge's identifier; the body is the key authorization, as
// text/plain. Every other request gets a 404 from [HTTP01.ServeHTTP], or
// goes to the wrapped handler with [HTTP01.Middleware]. Requests outside
// the challenge path cost one string comparison.
//
// The zero value is ready to use, with tokens in memory. An HTTP01 must not
// be copied after first use and its fields must not change after first use.
// It is safe for concurrent use.
type HTTP01 struct {
	// Store holds the presented tokens. Nil means an in-memory store that
	// only this process can answer from; use [StorageTokens] when another
	// node of a fleet may receive the CA's request. The tokens this HTTP01
	// presents are also kept in its memory until CleanUp, so that it
	// answers its own challenges without reading Store, even while Store
	// fails; Store is read for the tokens other nodes presented.
	Store TokenStore
	// Logger receives a debug record per answered challenge and a warning
	// when the store fails. Nil means silent.
	Logger *slog.Logger

	mem MemoryTokens // the tokens, or with Store set, the ones presented here
}

var _ acme.Solver = (*HTTP01)(nil)

func (h *HTTP01) store() TokenStore {
	if h.Store != nil {
		return h.Store
	}
	return &h.mem
}

func (h *HTTP01) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return discardLogger
}

var discardLogger = slog.New(slog.DiscardHandler)

// Present implements [acme.Solver]: it stores the challenge so that the
// handler answers it. A token that is not valid base64url (a path such as
// "../x" or "a/b", an escape such as "%2e", or longer than [MaxTokenLen]) is
// refused with an error wrapping [ErrInvalidToken] and never stored.
func (h *HTTP01) Present(ctx context.Context, chal acme.Challenge) error {
	if err := checkChallenge(chal, acme.ChallengeHTTP01); err != nil {
		return err
	}
	if chal.Wildcard {
		return fmt.Errorf("%w: http-01 cannot prove a wildcard", ErrInvalidIdentifier)
	}
	id, err := normalizeIdentifier(chal.Identifier)
	if err != nil {
		return err
	}
	t := HTTP01Token{Identifier: id, KeyAuthorization: chal.KeyAuthorization}
	if err := h.store().Put(ctx, chal.Token, t); err != nil {
		return fmt.Errorf("solvers: http-01 present: %w", err)
	}
	if h.Store != nil {
		_ = h.mem.Put(ctx, chal.Token, t)
	}
	return nil
}

// CleanUp implements [acme.Solver]: it removes the challenge, after which
// the handler no longer answers it. It runs under a context detached from
// ctx's cancellation, bounded by [DefaultCleanupTimeout].
func (h *HTTP01) CleanUp(ctx context.Context, chal acme.Challenge) error {
	if !validToken(chal.Token) {
		return nil // never stored
	}
	ctx, cancel := cleanupContext(ctx, 0)
	defer cancel()
	_ = h.mem.Delete(ctx, chal.Token)
	if err := h.store().Delete(ctx, chal.Token); err != nil {
		return fmt.Errorf("solvers: http-01 clean-up: %w", err)
	}
	return nil
}

// ServeHTTP answers a presented challenge and replies 404 Not Found to
// every other request.
func (h *HTTP01) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.Handle(w, r) {
		http.NotFound(w, r)
	}
}

// Middleware returns a handler that answers presented challenges and passes
// every other request to next. Nil next means [net/http.NotFoundHandler].
func (h *HTTP01) Middleware(next http.Handler) http.Handler {
	if next == nil {
		next = http.NotFoundHandler()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.Handle(w, r) {
			next.ServeHTTP(w, r)
		}
	})
}

// Handle answers r if it asks for a presented challenge and reports whether
// it did; when it reports false it has written nothing, so the caller can
// serve the request itself. It is the building block of [HTTP01.ServeHTTP]
// and [HTTP01.Middleware] for servers with their own routing. A request
// outside the challenge path costs one string comparison and no allocation.
//
// If the store fails for a well-formed request, Handle replies 500 and
// reports true.
func (h *HTTP01) Handle(w http.ResponseWriter, r *http.Request) bool {
	token, ok := strings.CutPrefix(r.URL.Path, HTTP01PathPrefix)
	if !ok {
		return false
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	// The exact path: a valid token needs no escaping, so any escape in the
	// request (RawPath set) means the client spelt it differently.
	if r.URL.RawPath != "" || !validToken(token) {
		return false
	}
	t, err := h.mem.Get(r.Context(), token)
	if err != nil && h.Store != nil {
		t, err = h.Store.Get(r.Context(), token)
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false
		}
		h.logger().WarnContext(r.Context(), "solvers: http-01 token store failed", "token", token, "err", err)
		http.Error(w, "challenge store unavailable", http.StatusInternalServerError)
		return true
	}
	if !hostMatches(r.Host, t.Identifier) || !matchesToken(token, t.KeyAuthorization) {
		return false
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/plain")
	hdr.Set("Content-Length", strconv.Itoa(len(t.KeyAuthorization)))
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write([]byte(t.KeyAuthorization))
	}
	h.logger().DebugContext(r.Context(), "solvers: http-01 challenge served", "identifier", t.Identifier, "remote", r.RemoteAddr)
	return true
}

// cleanupContext returns a context for clean-up: detached from ctx's
// cancellation (values are kept) and bounded by timeout, or by
// DefaultCleanupTimeout when timeout is not positive.
func cleanupContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout <= 0 {
		timeout = DefaultCleanupTimeout
	}
	return context.WithTimeout(context.WithoutCancel(ctx), timeout)
}
