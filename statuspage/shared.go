package statuspage

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ShareFor is how long a status built for one request also answers the
// requests that arrive after it: those that arrive while it is built wait
// for it, and those within ShareFor of its end reuse it. A page load reads
// every stored certificate and the audit trail, so a burst of loads (many
// operators, a dashboard polling) costs one read, not one per request.
const ShareFor = time.Second

// buildTimeout bounds one shared build.
const buildTimeout = time.Minute

// errNoStatus answers the requests that waited for a build that panicked.
var errNoStatus = errors.New("statuspage: building the status failed")

// shared is the status being built or last built for requests.
type shared struct {
	mu  sync.Mutex
	cur *build
	// fresh overrides ShareFor when not zero; negative shares only
	// builds in progress (tests).
	fresh time.Duration
	// waiters counts the requests waiting for a build (tests).
	waiters int
}

// build is one status built for requests. st and end are written under
// shared.mu before done is closed.
type build struct {
	done chan struct{}
	st   *Status
	end  time.Time
}

// sharedStatus returns a status for a request: the one being built, one
// built within ShareFor, or a new one. The build does not end with the
// request that started it (its context's values are kept, its
// cancellation is not), so the others waiting for it are not cut short;
// a waiter whose own context ends stops waiting.
func (h *Handler) sharedStatus(ctx context.Context) (*Status, error) {
	s := &h.share
	fresh := s.fresh
	if fresh == 0 {
		fresh = ShareFor
	}
	s.mu.Lock()
	b := s.cur
	if b != nil && !b.end.IsZero() && time.Since(b.end) >= fresh {
		b = nil
	}
	if b == nil {
		b = &build{done: make(chan struct{})}
		s.cur = b
		s.mu.Unlock()
		return h.runBuild(ctx, b), nil
	}
	s.waiters++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.waiters--
		s.mu.Unlock()
	}()
	select {
	case <-b.done:
		if b.st == nil {
			return nil, errNoStatus
		}
		return b.st, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// runBuild builds b's status. Should the build panic, its waiters get
// errNoStatus, the next request builds anew, and the panic goes on.
func (h *Handler) runBuild(ctx context.Context, b *build) (st *Status) {
	s := &h.share
	defer func() {
		s.mu.Lock()
		b.st, b.end = st, time.Now()
		if st == nil && s.cur == b {
			s.cur = nil
		}
		s.mu.Unlock()
		close(b.done)
	}()
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), buildTimeout)
	defer cancel()
	return h.status(bctx, h.now())
}
