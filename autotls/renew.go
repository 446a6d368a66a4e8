package autotls

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"time"
)

// renewer keeps one timer for all certificates: a heap ordered by the next
// time something must happen to a certificate (renewal or expiry). Nothing
// scans the cache, and there is no timer per certificate.
type renewer struct {
	mu      sync.Mutex
	h       schedHeap
	wake    chan struct{}
	started bool
}

type sched struct {
	at time.Time
	e  *entry
}

type schedHeap []sched

func (h schedHeap) Len() int           { return len(h) }
func (h schedHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h schedHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *schedHeap) Push(x any)        { *h = append(*h, x.(sched)) }
func (h *schedHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func (r *renewer) init() { r.wake = make(chan struct{}, 1) }

// schedule plans the next step for e: renewal (jittered by up to 1 % of
// the lifetime so a fleet's certificates do not renew at once), or expiry.
func (r *renewer) schedule(m *Manager, e *entry) {
	at := e.renewAt
	if life := e.notAfter.Sub(e.cert.Leaf.NotBefore); life > 0 {
		at = at.Add(time.Duration(rand.Int64N(int64(life/100) + 1)))
	}
	if !at.Before(e.notAfter) {
		at = e.notAfter
	}
	r.push(m, at, e)
}

func (r *renewer) push(m *Manager, at time.Time, e *entry) {
	st := m.st
	r.mu.Lock()
	heap.Push(&r.h, sched{at: at, e: e})
	earliest := r.h[0].e == e && r.h[0].at.Equal(at)
	start := !r.started
	r.started = true
	r.mu.Unlock()
	if start {
		st.flightMu.Lock()
		if !st.closed {
			st.wg.Add(1)
			go func() {
				defer st.wg.Done()
				for !r.loop(m) {
					// A panic ended the loop; it was logged. Start
					// again after the failure backoff.
					t := time.NewTimer(m.failureBackoff())
					select {
					case <-st.ctx.Done():
						t.Stop()
						return
					case <-t.C:
					}
				}
			}()
		}
		st.flightMu.Unlock()
	}
	if earliest {
		// Only a new earliest deadline changes the loop's timer.
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// loop runs the renewals until the Manager closes (it returns true then),
// or until a panic outside a step, which it recovers, logs and reports
// with false. A panic in a step fails that certificate's renewal only.
func (r *renewer) loop(m *Manager) (closed bool) {
	st := m.st
	defer func() {
		if v := recover(); v != nil {
			stack := debug.Stack()
			guard(func() {
				st.log.Error("autotls: recovered from a panic in the renewal loop", "panic", fmt.Sprint(v), "stack", string(stack))
			})
			closed = false
		}
	}()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		now := time.Now()
		due, wait := r.due(now)
		for _, s := range due {
			r.safeStep(m, s, now)
		}
		t.Reset(wait)
		select {
		case <-st.ctx.Done():
			return true
		case <-r.wake:
		case <-t.C:
		}
	}
}

// due pops the entries due at now and returns them with the wait until the
// next one.
func (r *renewer) due(now time.Time) ([]sched, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var due []sched
	for len(r.h) > 0 && !r.h[0].at.After(now) {
		due = append(due, heap.Pop(&r.h).(sched))
	}
	wait := time.Hour
	if len(r.h) > 0 {
		wait = time.Until(r.h[0].at)
	}
	return due, wait
}

// safeStep is step with a panic turned into a failed renewal of the entry,
// tried again after its backoff.
func (r *renewer) safeStep(m *Manager, s sched, now time.Time) {
	defer func() {
		if v := recover(); v != nil {
			m.recovered(s.e.name, v)
			r.retry(m, s.e, now)
		}
	}()
	r.step(m, s, now)
}

// step acts on a due entry: marks it expired, or starts its renewal. An
// entry that was replaced in the cache since it was scheduled is dropped.
func (r *renewer) step(m *Manager, s sched, now time.Time) {
	st := m.st
	if st.cache.get(s.e.name) != s.e {
		return
	}
	if !now.Before(s.e.notAfter) {
		st.cache.remove(s.e)
		return
	}
	if _, err := m.startIssue(s.e.name, true); err != nil {
		return // closed
	}
	r.retry(m, s.e, now)
}

// retry schedules e to be checked again: the renewal replaces the entry
// when it succeeds; if it fails, the old certificate keeps being served and
// the next try waits for the failure backoff (capped so expiry is still
// noticed).
func (r *renewer) retry(m *Manager, e *entry, now time.Time) {
	next := now.Add(m.failureBackoff())
	if f := m.st.failureFor(e.name, now); f != nil && f.until.After(next) {
		next = f.until
	}
	if next.After(e.notAfter) {
		next = e.notAfter
	}
	r.push(m, next, e)
}

func (m *Manager) failureBackoff() time.Duration {
	if m.FailureBackoff > 0 {
		return m.FailureBackoff
	}
	return DefaultFailureBackoff
}
