package autotls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"sync"
)

// Defaults of the bounded issuance queues.
const (
	// DefaultMaxBackgroundOrders is how many orders no handshake waits
	// for (renewals, Manage, retries, ARI polls, retried Stores) run at
	// once.
	DefaultMaxBackgroundOrders = 4
	// DefaultMaxHandshakeOrders is how many orders started by handshakes
	// for names the host policy allows run at once.
	DefaultMaxHandshakeOrders = 16
)

// queue is the bounded FIFO queue for background work: at most
// MaxBackgroundOrders workers run its tasks; a worker exits when the queue
// is empty, so an idle Manager runs no worker.
type queue struct {
	mu      sync.Mutex
	tasks   []task
	head    int
	running int
	// first holds tasks run before those of tasks: the names Manage is
	// waiting for, so that a call is not held up behind the renewals its
	// own loads make due. Manage bounds how many it queues.
	first []task
}

type task struct {
	name string
	run  func(ctx context.Context)
}

func (m *Manager) backgroundLimit() int {
	if m.MaxBackgroundOrders > 0 {
		return m.MaxBackgroundOrders
	}
	return DefaultMaxBackgroundOrders
}

func (m *Manager) handshakeLimit() int {
	if m.MaxHandshakeOrders > 0 {
		return m.MaxHandshakeOrders
	}
	return DefaultMaxHandshakeOrders
}

// enqueue adds a task, starting a worker if fewer than the limit run. It
// reports false when the Manager is closed.
func (m *Manager) enqueue(t task) bool { return m.enqueueAt(t, false) }

// enqueueFirst is enqueue for a task that runs before those queued by
// enqueue (see queue.first).
func (m *Manager) enqueueFirst(t task) bool { return m.enqueueAt(t, true) }

func (m *Manager) enqueueAt(t task, first bool) bool {
	st := m.st
	q := &st.queue
	return st.flights.ifOpen(func() {
		q.mu.Lock()
		if first {
			q.first = append(q.first, t)
		} else {
			q.tasks = append(q.tasks, t)
		}
		start := q.running < m.backgroundLimit()
		if start {
			q.running++
		}
		q.mu.Unlock()
		if start {
			st.wg.Add(1)
			go m.worker()
		}
	})
}

func (q *queue) pop() (task, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.first) > 0 {
		t := q.first[0]
		q.first[0] = task{}
		q.first = q.first[1:]
		if len(q.first) == 0 {
			q.first = nil
		}
		return t, true
	}
	if q.head == len(q.tasks) {
		q.tasks, q.head = q.tasks[:0], 0
		q.running--
		return task{}, false
	}
	t := q.tasks[q.head]
	q.tasks[q.head] = task{}
	q.head++
	if q.head > 1024 && q.head*2 > len(q.tasks) {
		q.tasks = append(q.tasks[:0], q.tasks[q.head:]...)
		q.head = 0
	}
	return t, true
}

func (m *Manager) worker() {
	st := m.st
	defer st.wg.Done()
	for {
		t, ok := st.queue.pop()
		if !ok {
			return
		}
		// After Close the tasks still run, under the cancelled context,
		// so that they fail at once and their flights finish.
		m.runTask(t)
	}
}

// runTask runs one task; a panic fails that task only.
func (m *Manager) runTask(t task) {
	defer func() {
		if v := recover(); v != nil {
			m.recovered(t.name, v)
			m.retryLater(t.name, m.now())
		}
	}()
	t.run(m.st.ctx)
}

// enqueueIssue queues the issuance (renew: the renewal) of name, unless
// one is in flight already, and returns its flight. On failure the name is
// planned again after its backoff.
func (m *Manager) enqueueIssue(name string, renew bool) (*flight, error) {
	return m.enqueueIssueOf(name, renew, nil)
}

// enqueueRenewal queues the renewal of e, which is due: if another
// certificate that is not due has replaced it by the time the task runs
// (another node's, loaded meanwhile), nothing is ordered.
func (m *Manager) enqueueRenewal(e *entry) (*flight, error) {
	return m.enqueueIssueOf(e.name, true, e.cert)
}

// enqueueIssueOf is enqueueIssue for the renewal of the certificate due
// (nil: whatever is cached).
func (m *Manager) enqueueIssueOf(name string, renew bool, due *tls.Certificate) (*flight, error) {
	f, lead, err := m.joinFlight(name)
	if err != nil || !lead {
		return f, err
	}
	ok := m.enqueue(task{name: name, run: func(ctx context.Context) {
		refused := false
		m.runFlight(name, f, func() bool { return !refused }, func() (*tls.Certificate, error) {
			ctx, cancel := context.WithTimeout(ctx, issueTimeout)
			defer cancel()
			if err := m.stillAllowed(ctx, name); err != nil {
				refused = true
				return nil, m.notRenewed(name, nil, err)
			}
			if renew && due != nil {
				if cur := m.st.cache.get(name); cur != nil && cur.cert != due && m.now().Before(cur.renewAt) && m.now().Before(cur.notAfter) {
					// The certificate this renewal was for has been
					// replaced meanwhile by one that is not due:
					// renewing that one would be a second replacement.
					return cur.cert, nil
				}
			}
			return m.issue(ctx, name, false, renew)
		})
	}})
	if !ok {
		m.finish(name, f, nil, ErrClosed)
		return nil, ErrClosed
	}
	return f, nil
}

// errNothingStored is the result of reloading a name that has nothing
// stored and is not managed.
var errNothingStored = errors.New("autotls: no stored certificate to reload")

// enqueueReload queues the step of a name whose plan came due while its
// certificate was not in memory, acting on what storage holds: a stored
// certificate due for renewal (or expired) is renewed at once — not cached
// first, so that a cache under pressure cannot evict it between two steps
// — and one that is not due is cached and planned again; a managed or
// lapsed name with nothing stored is obtained; any other is forgotten.
func (m *Manager) enqueueReload(name string) {
	f, lead, err := m.joinFlight(name)
	if err != nil || !lead {
		return
	}
	st := m.st
	ok := m.enqueue(task{name: name, run: func(ctx context.Context) {
		forgotten := false
		m.runFlight(name, f, func() bool { return !forgotten }, func() (*tls.Certificate, error) {
			ctx, cancel := context.WithTimeout(ctx, issueTimeout)
			defer cancel()
			e, err := m.loadStored(ctx, name)
			switch {
			case err == nil && m.fresh(e, nil, false) && m.now().Before(e.renewAt):
				m.install(e, EventLoaded)
				return e.cert, nil
			case err == nil: // due or expired: renew it, without reading it again
				if err := m.stillAllowed(ctx, name); err != nil {
					forgotten = true
					return nil, m.notRenewed(name, e, err)
				}
				return m.renewStored(ctx, name, false, e)
			case errors.Is(err, fs.ErrNotExist) || errors.Is(err, errCorrupt):
				if st.managed.has(name) || st.failures.isLapsed(name) {
					if err := m.stillAllowed(ctx, name); err != nil {
						forgotten = true
						return nil, m.notRenewed(name, nil, err)
					}
					return m.issue(ctx, name, false, false)
				}
				forgotten = true
				return nil, fmt.Errorf("%w: %s", errNothingStored, name)
			}
			return nil, fmt.Errorf("autotls: loading %s: %w", name, err)
		})
	}})
	if !ok {
		m.finish(name, f, nil, ErrClosed)
	}
}
