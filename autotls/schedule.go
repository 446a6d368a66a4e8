package autotls

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"time"
)

// schedule keeps one timer for every managed name: a heap ordered by the
// next time something must happen to a name (renewal, an ARI poll, a
// retried Store, a retry after a failure, expiry). Nothing scans the
// cache, and there is no timer per certificate. Each name has at most one
// live plan; a name rescheduled leaves its older heap item behind, which
// is skipped when it comes up (its generation is stale).
type schedule struct {
	mu      sync.Mutex
	h       schedHeap
	plans   map[string]uint32 // name → generation of its live heap item
	gen     uint32
	wake    chan struct{}
	started bool
}

// sched is one heap item: 32 bytes. Generations only need to differ
// from those of the other items of the same name in the heap, which the
// heap's compaction keeps few, so 32 bits do.
type sched struct {
	at   int64 // Unix nanoseconds
	gen  uint32
	name string
}

type schedHeap []sched

func (h schedHeap) Len() int           { return len(h) }
func (h schedHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h schedHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *schedHeap) Push(x any)        { *h = append(*h, x.(sched)) }
func (h *schedHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func (s *schedule) init() {
	s.wake = make(chan struct{}, 1)
	s.plans = make(map[string]uint32)
}

// at plans the next step for name at t, replacing any earlier plan.
func (s *schedule) at(m *Manager, name string, t time.Time) { s.plan(m, name, t, false) }

// plan is at, or atIfNone with ifNone.
func (s *schedule) plan(m *Manager, name string, t time.Time, ifNone bool) bool {
	st := m.st
	s.mu.Lock()
	if _, ok := s.plans[name]; ok && ifNone {
		s.mu.Unlock()
		return false
	}
	s.gen++
	s.plans[name] = s.gen
	heap.Push(&s.h, sched{at: t.UnixNano(), name: name, gen: s.gen})
	// Stale items pile up when names are rescheduled often: rebuild the
	// heap from the live plans once they are most of it.
	if len(s.h) > 64 && len(s.h) > 4*len(s.plans) {
		live := s.h[:0]
		for _, it := range s.h {
			if s.plans[it.name] == it.gen {
				live = append(live, it)
			}
		}
		clear(s.h[len(live):])
		s.h = live
		heap.Init(&s.h)
	}
	earliest := s.h[0].gen == s.gen
	start := !s.started
	s.started = true
	s.mu.Unlock()
	if start {
		st.flightMu.Lock()
		if !st.closed {
			st.wg.Add(1)
			go func() {
				defer st.wg.Done()
				m.watch()
			}()
			st.wg.Add(1)
			go func() {
				defer st.wg.Done()
				for !s.loop(m) {
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
		case s.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// atIfNone plans the next step for name at t unless it has a live plan
// (checked and planned at once), and reports whether it planned.
func (s *schedule) atIfNone(m *Manager, name string, t time.Time) bool {
	return s.plan(m, name, t, true)
}

// has reports whether name has a live plan.
func (s *schedule) has(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.plans[name]
	return ok
}

// planned reports the number of names with a live plan.
func (s *schedule) planned() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.plans)
}

// loop runs the due steps until the Manager closes (it returns true then),
// or until a panic outside a step, which it recovers, logs and reports
// with false. A panic in a step fails that name's work only.
func (s *schedule) loop(m *Manager) (closed bool) {
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
		wait := s.runDue(m, m.now())
		t.Reset(wait)
		select {
		case <-st.ctx.Done():
			return true
		case <-s.wake:
		case <-t.C:
		}
	}
}

// runDue runs the steps due at now and returns the wait until the next.
func (s *schedule) runDue(m *Manager, now time.Time) time.Duration {
	for _, name := range s.due(now) {
		m.safeStep(name, now)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.h) == 0 {
		return time.Hour
	}
	return max(time.Duration(s.h[0].at-now.UnixNano()), 0)
}

// due pops the names due at now (their plans are consumed).
func (s *schedule) due(now time.Time) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var due []string
	for len(s.h) > 0 && s.h[0].at <= now.UnixNano() {
		it := heap.Pop(&s.h).(sched)
		if s.plans[it.name] != it.gen {
			continue // rescheduled since
		}
		delete(s.plans, it.name)
		due = append(due, it.name)
	}
	return due
}

// safeStep is step with a panic turned into a failed attempt for the name,
// tried again after its backoff.
func (m *Manager) safeStep(name string, now time.Time) {
	defer func() {
		if v := recover(); v != nil {
			m.recovered(name, v)
			m.retryLater(name, now)
		}
	}()
	m.step(name, now)
}

// step acts on a name whose plan is due: it retries a Store, renews, polls
// ARI or marks an expiry, each through the bounded background queue; a
// managed name without a certificate is obtained.
func (m *Manager) step(name string, now time.Time) {
	st := m.st
	e := st.cache.get(name)
	if e == nil {
		// Not in memory: a certificate evicted (CacheCapacity), a managed
		// name without a certificate, or one whose certificate expired
		// and is no longer served. The reload acts on what storage holds.
		m.enqueueReload(name)
		return
	}
	switch {
	case e.unstored != nil:
		m.enqueueStore(e)
	case !now.Before(e.notAfter):
		if !m.ServeExpired {
			st.cache.remove(e)
			st.setLapsed(name, true)
		}
		m.emit(Event{Type: EventExpired, Name: name, NotAfter: e.notAfter, Serial: e.serial(), Err: m.lastFailure(name)})
		m.enqueueIssue(name, true)
	case !now.Before(e.renewAt):
		m.enqueueIssue(name, true)
	case e.ariDue(now) && !e.iss.noARI.Load():
		if until, held := e.iss.ariHeld(now); held {
			// A poll failed a moment ago: wait with the others.
			m.replan(e, e.with(func(x *entry) { x.ariPoll = until.Add(jitter(time.Minute)) }))
			return
		}
		m.enqueueARI(e)
	default:
		m.plan(e) // woken early: plan again
	}
}

// plan schedules the next step for a cached entry: its renewal, its next
// ARI poll, a retried Store, or its expiry, whichever comes first.
func (m *Manager) plan(e *entry) {
	next := e.renewAt
	if e.unstored != nil {
		next = m.now().Add(jitter(m.failureBackoff()))
	}
	m.st.sched.at(m, e.name, planTime(e, next))
}

// planTime is the time of an entry's next step: next (its renewal, or the
// retry of its Store), its next ARI poll or its expiry, whichever comes
// first.
func planTime(e *entry, next time.Time) time.Time {
	if !e.ariPoll.IsZero() && e.ariPoll.Before(next) && !e.iss.noARI.Load() {
		next = e.ariPoll
	}
	if e.notAfter.Before(next) {
		next = e.notAfter
	}
	return next
}

// retryLater plans the next attempt for name after a failure: at the end
// of its backoff, but never later than the expiry of the certificate it
// still serves, so that the expiry is noticed.
func (m *Manager) retryLater(name string, now time.Time) {
	st := m.st
	next := now.Add(jitter(m.failureBackoff()))
	if f := st.failureFor(name, now); f != nil {
		next = f.until
	}
	if e := st.cache.get(name); e != nil && next.After(e.notAfter) && now.Before(e.notAfter) {
		next = e.notAfter
	}
	st.sched.at(m, name, next)
}

// jitter spreads d by ±10 %, so that retries of many names do not line up.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d - d/10 + time.Duration(rand.Int64N(int64(d/5)+1))
}

func (m *Manager) failureBackoff() time.Duration {
	if m.FailureBackoff > 0 {
		return m.FailureBackoff
	}
	return DefaultFailureBackoff
}
