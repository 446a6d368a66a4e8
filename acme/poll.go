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
	// probeDecay shrinks the estimate after a first poll that found the
	// object done, so the client notices when the server gets faster.
	probeDecay = 0.97
)

// pollTiming is what the client has learned of the server's timing: for
// each kind, about how long the server took from the request (challenge
// accepted, CSR submitted) to the object being done. It is shared by all
// of a Client's goroutines.
type pollTiming struct {
	mu  sync.Mutex
	est [2]time.Duration // zero: no history
}

// PollTimings reports how long the client expects the server to take, as
// learned from recent polls: validation (challenge accepted to
// authorization valid) and finalization (CSR submitted to certificate
// issued). Zero means no history yet. The first poll of a new
// authorization or order is made at about these times.
func (c *Client) PollTimings() (validation, finalization time.Duration) {
	c.timing.mu.Lock()
	defer c.timing.mu.Unlock()
	return c.timing.est[pollAuthz], c.timing.est[pollOrder]
}

// poller yields the waits before each poll of one object. With history, the
// first wait is the learned estimate, and later ones start at an eighth of
// it and grow by half; without, they start at the client's PollInterval
// and grow by half. Waits are capped at MaxPollInterval; a Retry-After is
// obeyed whatever its length.
type poller struct {
	c     *Client
	kind  int
	start time.Time
	polls int
	next  time.Duration
	step  time.Duration
	max   time.Duration
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
	est := c.timing.est[kind]
	c.timing.mu.Unlock()
	if est > 0 {
		p.next = min(est, limit)
		p.step = max(est/8, minPollStep)
	}
	return p
}

// wait sleeps before the next poll.
func (p *poller) wait(ctx context.Context, retryAfter time.Duration) error {
	d := p.next
	if retryAfter > 0 {
		d = retryAfter
	}
	if p.polls > 0 || retryAfter > 0 {
		p.step += p.step / 2
		if p.step > p.max {
			p.step = p.max
		}
	}
	p.next = p.step
	p.polls++
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		// Waiting past the deadline is pointless: fail now, as the
		// context would, so the caller learns why at once.
		return context.DeadlineExceeded
	}
	return sleep(ctx, d)
}

// waitAtMost is wait with the sleep capped at limit (for a short grace).
func (p *poller) waitAtMost(ctx context.Context, limit time.Duration) error {
	p.polls++
	return sleep(ctx, min(p.next, limit))
}

// done records that the polled object reached a final state at the last
// poll, which teaches the client the server's timing. Only polls that the
// client scheduled teach it: a Retry-After says nothing of the work.
func (p *poller) done(retryAfterSeen bool) {
	if p.polls == 0 || retryAfterSeen {
		return
	}
	elapsed := time.Since(p.start)
	t := &p.c.timing
	t.mu.Lock()
	defer t.mu.Unlock()
	switch cur := t.est[p.kind]; {
	case cur == 0 || p.polls > 1:
		// No history, or the first poll came too early: what it took
		// (an upper bound, by at most one poll step) is the new estimate.
		t.est[p.kind] = elapsed
	default:
		// Done at the first poll: the server may be faster than thought.
		t.est[p.kind] = max(time.Duration(float64(cur)*probeDecay), minPollStep)
	}
	if t.est[p.kind] > p.max {
		t.est[p.kind] = p.max
	}
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
