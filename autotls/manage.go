package autotls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// Limits of one Manage call's bookkeeping.
const (
	// manageWindowPerWorker is how many of one Manage call's names are in
	// the background queue or in flight at once, per background worker
	// (MaxBackgroundOrders): enough that the workers never wait for Manage
	// to hand them the next name, few enough that the names still waiting
	// cost nothing but their place in the caller's slice.
	manageWindowPerWorker = 2
	// manageChunk is how many names are marked managed under one hold of
	// the lock, so that handshakes asking whether a name is managed are
	// never held up for long by a call with a million names.
	manageChunk = 4096
	// maxManageErrors is how many failures Manage's error lists one by
	// one; the others are counted in one more error.
	maxManageErrors = 1000
)

// Manage obtains certificates for names now, through the bounded
// background queue (MaxBackgroundOrders at once), and keeps them managed:
// they are allowed whatever the host policy, renewed, and, while one has
// no valid certificate (its order failed, its stored one expired), retried
// in the background with backoff. A name whose certificate is in storage
// is loaded, not ordered; one already cached is left as it is. Wildcard
// names ("*.example.com") need dns-01 (DNS01) or dns-persist-01 (DNSPersist01).
//
// The names are streamed through the queue: only a few per background
// worker are queued or in flight at any moment, so the names still
// waiting cost no memory beyond the caller's slice, and a call with a
// million names needs no more goroutines than one with ten. Every name is
// marked managed first, before any is ordered.
//
// Manage returns when every name has a certificate or failed (errors
// joined: the first thousand failures one by one, the others counted in
// one more error; [Manager.Certificates] lists each name's last error), or
// when ctx is done; issuance continues in the background after that,
// names not yet queued included (they are then copied, so the caller may
// reuse the slice). It calls [Manager.Validate] first, and checks every
// name, and returns the first error before anything is ordered.
func (m *Manager) Manage(ctx context.Context, names ...string) error {
	st := m.state()
	if err := m.validate(st); err != nil {
		return err
	}
	for _, n := range names {
		if _, err := m.manageName(n); err != nil {
			return err
		}
	}
	// Marked before the background starts, so that the schedule built
	// from storage never finds one of them due and unmanaged (a renewal
	// the policy would refuse).
	m.markManaged(names)
	m.startBackground()
	r := &manageRun{m: m, names: names, window: manageWindowPerWorker * m.backgroundLimit()}
	r.results = make(chan manageResult, r.window)
	r.pending = make(map[string]int, r.window)
	return r.wait(ctx)
}

// manageName normalises a name given to Manage.
func (m *Manager) manageName(n string) (string, error) {
	if a, ok := parseIPName(n); ok {
		if !m.AllowIPCertificates {
			return "", fmt.Errorf("%w: IP address %q (AllowIPCertificates is off)", ErrHostNotAllowed, n)
		}
		return a.String(), nil
	}
	return normalizeWildcard(n)
}

// markManaged marks names (already checked) managed, a chunk at a time.
func (m *Manager) markManaged(names []string) {
	st := m.st
	buf := make([]string, 0, min(len(names), manageChunk))
	for len(names) > 0 {
		chunk := names[:min(len(names), manageChunk)]
		names = names[len(chunk):]
		buf = buf[:0]
		for _, n := range chunk {
			v, _ := m.manageName(n)
			buf = append(buf, v)
		}
		st.managed.add(buf)
	}
}

// managedNames holds the names the Manager was asked to manage (in
// normal form), under a read-write mutex.
type managedNames struct {
	mu  sync.RWMutex
	set map[string]bool
}

func (mn *managedNames) init() { mn.set = make(map[string]bool) }

// add marks names managed, under one lock.
func (mn *managedNames) add(names []string) {
	mn.mu.Lock()
	defer mn.mu.Unlock()
	for _, v := range names {
		mn.set[v] = true
	}
}

// has reports whether name is managed.
func (mn *managedNames) has(name string) bool {
	mn.mu.RLock()
	defer mn.mu.RUnlock()
	return mn.set[name]
}

// read calls f with the names read-locked, for a merge that must see one
// set throughout; f must neither change nor keep set.
func (mn *managedNames) read(f func(set map[string]bool)) {
	mn.mu.RLock()
	defer mn.mu.RUnlock()
	f(mn.set)
}

// manageRun feeds one Manage call's names to the background queue, window
// at a time, and gathers their results.
type manageRun struct {
	m      *Manager
	names  []string // not yet queued, as the caller gave them
	window int
	// results receives the outcome of every queued name; its
	// capacity is the window, so that a flight never blocks sending its
	// result, even after Manage has returned.
	results chan manageResult
	// pending counts the queued names whose result has not arrived, by
	// name (a name given twice is queued twice).
	pending map[string]int
	npend   int
	closed  error // ErrClosed once the Manager refused a name

	errs []error
	more int // failures beyond maxManageErrors
}

// fill queues names until the window is full or none is left.
func (r *manageRun) fill() {
	st := r.m.st
	for r.npend < r.window && len(r.names) > 0 && r.closed == nil {
		name, _ := r.m.manageName(r.names[0])
		r.names = r.names[1:]
		if st.cache.get(name) != nil {
			continue
		}
		if err := r.m.enqueueManaged(name, r.results); err != nil {
			r.closed = err
			break
		}
		r.pending[name]++
		r.npend++
	}
}

// enqueueManaged queues the issuance of name as enqueueIssue does, and
// sends its outcome to results once it is done: from the worker that ran
// it, without a goroutine of its own (only a name already in flight gets
// one, to wait for that flight).
func (m *Manager) enqueueManaged(name string, results chan<- manageResult) error {
	f, lead, err := m.joinFlight(name)
	if err != nil {
		return err
	}
	if !lead {
		go func() {
			<-f.done
			results <- manageResult{name: name, err: f.err}
		}()
		return nil
	}
	ok := m.enqueueFirst(task{name: name, run: func(ctx context.Context) {
		defer func() { results <- manageResult{name: name, err: flightErr(name, f)} }()
		m.runFlight(name, f, func() bool { return true }, func() (*tls.Certificate, error) {
			ctx, cancel := context.WithTimeout(ctx, issueTimeout)
			defer cancel()
			return m.issue(ctx, name, false, false)
		})
	}})
	if !ok {
		m.finish(name, f, nil, ErrClosed)
		return ErrClosed
	}
	return nil
}

// flightErr returns the outcome of a flight that should be done.
func flightErr(name string, f *flight) error {
	select {
	case <-f.done:
		return f.err
	default:
		return fmt.Errorf("autotls: obtaining %s: ended without a result", name)
	}
}

// manageResult is the outcome of one name.
type manageResult struct {
	name string
	err  error
}

// receive books one result.
func (r *manageRun) receive(res manageResult) {
	if r.pending[res.name]--; r.pending[res.name] <= 0 {
		delete(r.pending, res.name)
	}
	r.npend--
	if res.err != nil {
		r.add(res.err)
	}
}

func (r *manageRun) add(err error) {
	if len(r.errs) < maxManageErrors {
		r.errs = append(r.errs, err)
		return
	}
	r.more++
}

// wait runs the call until every name has a result or ctx is done.
func (r *manageRun) wait(ctx context.Context) error {
	for {
		r.fill()
		if r.npend == 0 {
			break
		}
		if ctx.Err() != nil {
			return r.detach(ctx)
		}
		select {
		case res := <-r.results:
			r.receive(res)
		case <-ctx.Done():
			return r.detach(ctx)
		}
	}
	if r.closed != nil {
		if n := len(r.names); n > 0 {
			r.add(fmt.Errorf("%w (%d more names not obtained)", r.closed, n))
		} else {
			r.add(r.closed)
		}
	}
	return r.join()
}

// join returns the gathered errors.
func (r *manageRun) join() error {
	errs := r.errs
	if r.more > 0 {
		errs = append(errs, fmt.Errorf("autotls: %d more names failed (Manager.Certificates lists each name's last error)", r.more))
	}
	return errors.Join(errs...)
}

// detach returns Manage's error once ctx is done, and hands the names not
// yet queued to a background goroutine that goes on queuing them, window
// at a time, until they are done or the Manager is closed.
func (r *manageRun) detach(ctx context.Context) error {
	for name, n := range r.pending {
		for range n {
			r.add(fmt.Errorf("%w: %s: %w", ErrIssuancePending, name, ctx.Err()))
		}
	}
	if n := len(r.names); n > 0 {
		r.add(fmt.Errorf("%w: %d more names not queued yet: %w", ErrIssuancePending, n, ctx.Err()))
	}
	err := r.join()
	if len(r.names) == 0 || r.closed != nil {
		return err
	}
	bg := &manageRun{m: r.m, names: slices.Clone(r.names), window: r.window, results: r.results, pending: r.pending, npend: r.npend}
	r.names = nil
	st := r.m.st
	st.flights.ifOpen(func() {
		st.wg.Add(1)
		go func() {
			defer st.wg.Done()
			bg.background()
		}()
	})
	return err
}

// background is wait without a caller: failures are reported by events
// and logs only, and it stops when the Manager closes.
func (r *manageRun) background() {
	st := r.m.st
	for {
		r.fill()
		if r.npend == 0 {
			return
		}
		select {
		case res := <-r.results:
			r.receive(res)
			r.errs, r.more = r.errs[:0], 0
		case <-st.ctx.Done():
			return
		}
	}
}
