package acme

import (
	"context"
	"sync"
	"time"
)

// What is polled: an authorization being validated, or an order being
// finalized (or becoming ready).
const (
	pollAuthz = iota
	pollOrder
)

// Bounds of the learned poll schedule.
const (
	minPollStep = 5 * time.Millisecond // shortest wait between two polls
	maxLearned  = time.Minute          // longest learned first wait
	// loDecay shrinks the known lower bound after each first poll that
	// found the object done, so the client notices when the server gets
	// faster.
	loDecay = 0.99
)

// pollTiming is what the client has learned of the server's timing: for
// each kind, bounds on how long the server takes from the request
// (challenge accepted, CSR submitted) to the object being done — at least
// lo (a poll found it not yet done), at most hi (a poll found it done). It
// is shared by all of a Client's goroutines.
type pollTiming struct {
	mu     sync.Mutex
	lo, hi [2]time.Duration // hi zero: no history
}

// PollTimings reports how long the client expects the server to take, as
// learned from recent polls: validation (challenge accepted to
// authorization valid) and finalization (CSR submitted to certificate
// issued). Zero means no history yet. The first poll of a new
// authorization or order is made at about these times.
func (c *Client) PollTimings() (validation, finalization time.Duration) {
	c.timing.mu.Lock()
	defer c.timing.mu.Unlock()
	return c.timing.hi[pollAuthz], c.timing.hi[pollOrder]
}

// poller yields the waits before each poll of one object.
//
// Without history the waits start at the client's PollInterval and grow by
// half. With history the first poll is made between the learned bounds (at
// their middle while they are far apart, at the upper one once they are
// within an eighth of it), the second at the upper bound, and later ones a
// tenth of it apart, growing by half. So a server that takes two seconds
// is polled about once per object, and one that takes milliseconds soon
// gets its first poll after a few. The waits after the learned ones are
// capped at MaxPollInterval; a Retry-After is obeyed whatever its length.
type poller struct {
	c     *Client
	kind  int
	start time.Time
	polls int
	hi    time.Duration // learned upper bound; zero without history
	next  time.Duration // the next wait
	step  time.Duration // the wait after that, growing
	max   time.Duration
	// at and prev are when the last two polls were made, since start.
	at, prev time.Duration
}

func (c *Client) newPoller(kind int) *poller {
	first, limit := c.PollInterval, c.MaxPollInterval
	if first <= 0 {
		first = DefaultPollInterval
	}
	if limit <= 0 {
		limit = DefaultMaxPollInterval
	}
	if limit < first {
		limit = first
	}
	p := &poller{c: c, kind: kind, start: time.Now(), next: first, step: first, max: limit}
	c.timing.mu.Lock()
	lo, hi := c.timing.lo[kind], c.timing.hi[kind]
	c.timing.mu.Unlock()
	if hi > 0 {
		p.hi = hi
		p.next = hi
		if gap := hi - lo; gap > hi/8 {
			p.next = lo + gap/2
		}
		p.next = min(max(p.next, minPollStep), maxLearned)
		p.step = max(hi/10, minPollStep)
	}
	return p
}

// wait sleeps before the next poll.
func (p *poller) wait(ctx context.Context, retryAfter time.Duration) error {
	d := p.next
	if retryAfter > 0 {
		d = retryAfter
	}
	switch {
	case p.polls == 0 && p.hi > d:
		p.next = p.hi - d // the second poll at the upper bound
	default:
		if p.polls > 0 {
			p.step = min(p.step+p.step/2, p.max)
		}
		p.next = p.step
	}
	if p.polls > 0 || p.hi == 0 {
		p.next = min(p.next, p.max)
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		// Waiting past the deadline is pointless: fail now, as the
		// context would, so the caller learns why at once.
		return context.DeadlineExceeded
	}
	if err := sleep(ctx, d); err != nil {
		return err
	}
	p.polled()
	return nil
}

// waitAtMost is wait with the sleep capped at limit (for a short grace).
// The waits grow as wait's do, so that a grace of seconds costs a few
// polls, not one per first wait.
func (p *poller) waitAtMost(ctx context.Context, limit time.Duration) error {
	d := min(p.next, max(limit, 0))
	p.step = min(p.step+p.step/2, p.max)
	p.next = p.step
	if err := sleep(ctx, d); err != nil {
		return err
	}
	p.polled()
	return nil
}

func (p *poller) polled() {
	p.polls++
	p.prev, p.at = p.at, time.Since(p.start)
}

// done records that the polled object reached a final state at the last
// poll, which teaches the client the server's timing. Only polls that the
// client scheduled teach it: a Retry-After says nothing of the work.
func (p *poller) done(retryAfterSeen bool) {
	if p.polls == 0 || retryAfterSeen {
		return
	}
	t := &p.c.timing
	t.mu.Lock()
	defer t.mu.Unlock()
	k := p.kind
	if p.polls == 1 {
		// Done at the first poll: the server took at most this long, and
		// may have become faster than the lower bound says.
		t.lo[k] = time.Duration(float64(t.lo[k]) * loDecay)
	} else {
		t.lo[k] = p.prev
	}
	t.hi[k] = min(p.at, maxLearned)
	t.lo[k] = min(t.lo[k], t.hi[k])
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
