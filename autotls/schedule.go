package autotls

import (
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
// plan (a planSet): planning a name again moves its plan.
type schedule struct {
	mu      sync.Mutex
	plans   planSet
	wake    chan struct{}
	started bool
	// stepping counts the runDue calls acting on names they popped, so
	// that a test can tell when no due step is under way.
	stepping int
}

func (s *schedule) init() {
	s.wake = make(chan struct{}, 1)
}

// at plans the next step for name at t, replacing any earlier plan.
func (s *schedule) at(m *Manager, name string, t time.Time) { s.plan(m, name, t, false) }

// plan is at, or atIfNone with ifNone.
func (s *schedule) plan(m *Manager, name string, t time.Time, ifNone bool) bool {
	st := m.st
	s.mu.Lock()
	if ifNone && s.plans.has(name) {
		s.mu.Unlock()
		return false
	}
	s.plans.set(name, t.UnixNano())
	first, _, _ := s.plans.earliest()
	earliest := first == name
	start := !s.started
	s.started = true
	s.mu.Unlock()
	if start {
		st.flights.ifOpen(func() {
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
					if st.clock.sleep(st.ctx, m.failureBackoff(), false) != nil {
						return
					}
				}
			}()
		})
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
	return s.plans.has(name)
}

// planned reports the number of names with a live plan.
func (s *schedule) planned() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.plans.len()
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
	t := st.clock.newTimer(time.Hour)
	defer t.Stop()
	for {
		wait := s.runDue(m, m.now())
		t.Reset(wait)
		select {
		case <-st.ctx.Done():
			return true
		case <-s.wake:
		case <-t.C():
		}
	}
}

// runDue runs the steps due at now and returns the wait until the next.
func (s *schedule) runDue(m *Manager, now time.Time) time.Duration {
	due := s.due(now)
	for _, name := range due {
		m.safeStep(name, now)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(due) > 0 {
		s.stepping--
	}
	_, at, ok := s.plans.earliest()
	if !ok {
		return time.Hour
	}
	return max(time.Duration(at-now.UnixNano()), 0)
}

// due pops the names due at now (their plans are consumed).
func (s *schedule) due(now time.Time) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var due []string
	for {
		name, ok := s.plans.popDue(now.UnixNano())
		if !ok {
			if len(due) > 0 {
				s.stepping++
			}
			return due
		}
		due = append(due, name)
	}
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
	case !now.Before(e.notAfter):
		// Before a retried Store: an expired certificate is not worth
		// storing, and its plan (at the expiry, now past) would make the
		// retry due at once, again and again, while storage fails.
		if !m.ServeExpired {
			st.cache.remove(e)
			st.failures.setLapsed(name, true)
		}
		m.emit(Event{Type: EventExpired, Name: name, NotAfter: e.notAfter, Serial: e.serial(), Err: m.lastFailure(name)})
		m.enqueueIssue(name, true)
	case e.unstored != nil:
		m.enqueueStore(e)
	case !now.Before(e.renewAt):
		m.enqueueRenewal(e)
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
	if e.unstored != nil {
		// The retried Store comes first (step does nothing else while it
		// fails), after the back-off: an ARI poll or renewal due
		// meanwhile would make it due at once, again and again, while
		// storage fails. Only the expiry comes sooner.
		next := m.now().Add(jitter(m.failureBackoff()))
		if e.notAfter.Before(next) {
			next = e.notAfter
		}
		m.st.sched.at(m, e.name, next)
		return
	}
	m.st.sched.at(m, e.name, planTime(e, e.renewAt))
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
	if f := st.failures.failureFor(name, now); f != nil {
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
