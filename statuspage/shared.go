package statuspage

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ShareFor is how long a status built for one request also answers the
// requests for the same page that arrive after it: those that arrive
// while it is built wait for it, and those within ShareFor of its end
// reuse it. The certificates come from the Manager's shared snapshot
// (autotls.Manager.Snapshot) whatever the page; what a build adds is the
// page's rows (each loaded) and the audit trail's read, so a burst of
// loads (many operators, a dashboard polling) costs one of each, not one
// per request.
const ShareFor = time.Second

// buildTimeout bounds one shared build.
const buildTimeout = time.Minute

// maxSharedPages bounds the pages shared at once; a request for another
// page builds its own.
const maxSharedPages = 64

// errNoStatus answers the requests that waited for a build that panicked.
var errNoStatus = errors.New("statuspage: building the status failed")

// shared is the status being built or last built for requests, per page.
type shared struct {
	mu  sync.Mutex
	cur map[Query]*build
	// fresh overrides ShareFor when not zero; negative shares only
	// builds in progress (tests).
	fresh time.Duration
	// waiters counts the requests waiting for a build (tests).
	waiters int
}

// build is one status built for requests. st, err and end are written
// under shared.mu before done is closed.
type build struct {
	done chan struct{}
	st   *Status
	err  error
	end  time.Time
}

// sharedStatus returns a status of page q for a request: the one being
// built, one built within ShareFor, or a new one. The build does not end
// with the request that started it (its context's values are kept, its
// cancellation is not), so the others waiting for it are not cut short;
// a waiter whose own context ends stops waiting.
func (h *Handler) sharedStatus(ctx context.Context, q Query) (*Status, error) {
	s := &h.share
	fresh := s.fresh
	if fresh == 0 {
		fresh = ShareFor
	}
	s.mu.Lock()
	if s.cur == nil {
		s.cur = map[Query]*build{}
	}
	for k, b := range s.cur {
		if !b.end.IsZero() && time.Since(b.end) >= fresh {
			delete(s.cur, k)
		}
	}
	b := s.cur[q]
	if b == nil {
		b = &build{done: make(chan struct{})}
		if len(s.cur) < maxSharedPages {
			s.cur[q] = b
		}
		s.mu.Unlock()
		return h.runBuild(ctx, b, q)
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
		if b.st == nil && b.err == nil {
			return nil, errNoStatus
		}
		return b.st, b.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// runBuild builds b's status. Should the build panic, its waiters get
// errNoStatus, the next request builds anew, and the panic goes on.
func (h *Handler) runBuild(ctx context.Context, b *build, q Query) (st *Status, err error) {
	s := &h.share
	defer func() {
		s.mu.Lock()
		b.st, b.err, b.end = st, err, time.Now()
		if st == nil && err == nil && s.cur[q] == b {
			delete(s.cur, q)
		}
		s.mu.Unlock()
		close(b.done)
	}()
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), buildTimeout)
	defer cancel()
	return h.status(bctx, h.now(), q)
}
