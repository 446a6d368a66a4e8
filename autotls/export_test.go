package autotls

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/tlsmint/tlsmint/storage"
)

// StoreForTest writes a certificate chain and key for name into store where
// a Manager for directory finds it, as if it had been obtained.
func StoreForTest(ctx context.Context, store storage.Storage, directory, name string, chainPEM []byte, key crypto.Signer) error {
	keyDER, err := encodeKeyDER(key)
	if err != nil {
		return err
	}
	s := &storedCert{storedMeta: storedMeta{Name: name, Issuer: directory, ObtainedAt: time.Now().UTC()}, Key: keyDER, Chain: chainDER(chainPEM)}
	data, err := encodeStoredCert(s)
	if err != nil {
		return err
	}
	return store.Store(ctx, "certificates/"+issuerKey(directory)+"/"+storageName(name)+".json", data)
}

// SetMinARIPollForTest lowers the floor of the ARI poll interval (one
// minute) so that tests can follow a CA's Retry-After of seconds. Call it
// before the Manager's first use.
func SetMinARIPollForTest(m *Manager, d time.Duration) { m.state().minARIPoll = d }

// UnboundedForTest lifts the Manager's safety bounds on orders
// (MaxCertificatesPerName, the issuers' MaxOrdersPerMinute), for
// benchmarks and tests that order far more than a day's worth. Call it
// before the Manager's first use.
func UnboundedForTest(m *Manager) {
	st := m.state()
	st.unbounded = true
	for _, iss := range st.issuers {
		iss.orders = nil
	}
}

// SetMaxOrderWaitForTest sets how long an order waits for its issuer's
// bound of orders per minute (a minute) before the issuer is skipped.
func SetMaxOrderWaitForTest(m *Manager, d time.Duration) { m.state().maxOrderWait = d }

// SetCatchUpForTest sets the window over which renewals found overdue at
// start-up are spread (an hour); zero renews them at once. Call it before
// the Manager's first use.
func SetCatchUpForTest(m *Manager, d time.Duration) { m.state().catchUpWindow = d }

// SetARIFirstPollForTest sets the spread of a new certificate's first
// ARI poll (a random point of the first six hours); zero polls at once
// after issuance. Call it before the Manager's first use.
func SetARIFirstPollForTest(m *Manager, spread time.Duration) { m.state().ariFirstSpread = spread }

// SetClockForTest makes the Manager read the time from now, standing for
// the world's time: the test CA does not follow it, so the Manager does
// not correct it from the CA's Date headers. Call it before the Manager's
// first use.
func SetClockForTest(m *Manager, now func() time.Time) {
	st := m.state()
	st.clock.local, st.clock.fixed = now, true
}

// SetLocalClockForTest makes the Manager's local clock read now, a clock
// that is off from the CA's: the Manager measures and corrects the skew as
// it would with a skewed host clock. Call it before the Manager's first
// use.
func SetLocalClockForTest(m *Manager, now func() time.Time) { m.state().clock.local = now }

// RunDueForTest runs every scheduled step due at now, as the Manager's
// loop would, and returns the wait until the next.
func RunDueForTest(m *Manager, now time.Time) time.Duration {
	return m.state().sched.runDue(m, now)
}

// SwapForTest replaces name's cached certificate by a copy, as a renewal
// swaps in a new one, and reports whether name was cached.
func SwapForTest(m *Manager, name string) bool {
	st := m.state()
	e := st.cache.get(name)
	if e == nil {
		return false
	}
	c := *e.cert
	st.cache.put(e.with(func(x *entry) { x.cert = &c }))
	return true
}

// RenewForTest renews name's certificate now, as its scheduled renewal
// would, and waits for the result.
func RenewForTest(m *Manager, name string) error {
	st := m.state()
	// Due now, as at its planned time, so that a retry after a failure
	// comes due too.
	for {
		e := st.cache.get(name)
		if e == nil || st.cache.swap(e, e.with(func(x *entry) { x.renewAt = m.now() })) {
			break
		}
	}
	f, err := m.enqueueIssue(name, true)
	if err != nil {
		return err
	}
	<-f.done
	return f.err
}

// CacheStatsForTest returns the number of certificates in memory and how
// many were evicted so far.
func CacheStatsForTest(m *Manager) (size int, evicted uint64) {
	st := m.state()
	return st.cache.size(), st.cache.evicted.Load()
}

// CachedForTest reports whether name's certificate is in memory.
func CachedForTest(m *Manager, name string) bool { return m.state().cache.get(name) != nil }

// DiscoveredForTest returns a channel closed when the Manager's schedule
// is built from storage.
func DiscoveredForTest(m *Manager) <-chan struct{} { return m.state().discovered }

// SetFastDiscoveryForTest lifts the pace of the loads of stored
// certificates the schedule index does not know. Call it before the
// Manager's first use.
func SetFastDiscoveryForTest(m *Manager) { m.state().fastDiscovery = true }

// HoldStartupForTest makes the discovery and the storage watcher wait, in
// place of the pause of the handshakes' loads, until release is called.
// Call it before the Manager's first use.
func HoldStartupForTest(m *Manager) (release func()) {
	ch := make(chan struct{})
	m.state().startHold = ch
	return sync.OnceFunc(func() { close(ch) })
}

// PlannedForTest returns the number of names with a plan.
func PlannedForTest(m *Manager) int { return m.state().sched.planned() }

// PlanTimeForTest returns when name's next step is planned.
func PlanTimeForTest(m *Manager, name string) (time.Time, bool) {
	s := &m.state().sched
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.plans.find(name)
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(0, s.plans.items[s.plans.slots[i]-1].at), true
}

// PlannedAtForTest reports whether name has a plan.
func PlannedAtForTest(m *Manager, name string) bool { return m.state().sched.has(name) }

// StoredLeafForTest decodes a stored certificate value (any format) and
// returns its leaf and the account URL that obtained it.
func StoredLeafForTest(value []byte) (*x509.Certificate, string, error) {
	s, err := decodeStored(value)
	if err != nil {
		return nil, "", err
	}
	leaf, err := x509.ParseCertificate(s.leafDER())
	if err != nil {
		return nil, "", err
	}
	return leaf, s.AccountURL, nil
}

// StoredAsFormat1ForTest re-encodes a stored certificate value in format 1
// (JSON with PEM), as versions before format 2 wrote it, without its
// renewal information.
func StoredAsFormat1ForTest(value []byte) ([]byte, error) {
	s, err := decodeStored(value)
	if err != nil {
		return nil, err
	}
	var chain []byte
	for _, der := range s.Chain {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	s.ARI = nil
	return json.Marshal(storedV1{Version: 1, storedMeta: s.storedMeta, CertificatePEM: string(chain),
		PrivateKeyPEM: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: s.Key}))})
}

// StoredFormatForTest returns the format of a stored certificate value.
func StoredFormatForTest(value []byte) (int, error) {
	s, err := decodeStored(value)
	if err != nil {
		return 0, err
	}
	return s.version, nil
}

// EndBackoffForTest ends name's back-off now, as if its time had run out;
// the rest of its failure record (the failed challenge type) stays.
func EndBackoffForTest(m *Manager, name string) {
	st := m.state()
	st.failures.mu.Lock()
	defer st.failures.mu.Unlock()
	if f := st.failures.byName[name]; f != nil {
		f.until = st.clock.now()
	}
}

// FakeClock is a clock for the Manager's lifecycle that moves only when a
// test advances it: its time, the schedule's timer, back-offs and the
// pacing of orders all follow it, so a test runs weeks of renewals in
// milliseconds. The CA does not follow it (Pebble dates certificates by
// the real clock); see the test CA wrap in clock_test.go for one that
// does. It is safe for concurrent use.
type FakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers map[*fakeTimer]struct{}
	// workers counts the background queue's workers sleeping on it.
	workers int
}

type fakeTimer struct {
	c      *FakeClock
	ch     chan time.Time
	at     time.Time
	worker bool
}

// NewFakeClock returns a clock standing at start.
func NewFakeClock(start time.Time) *FakeClock {
	return &FakeClock{now: start, timers: map[*fakeTimer]struct{}{}}
}

// Now returns the clock's time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *FakeClock) timer(d time.Duration) clockTimer {
	t := &fakeTimer{c: c, ch: make(chan time.Time, 1)}
	t.Reset(d)
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Reset(d time.Duration) bool {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	_, active := c.timers[t]
	select {
	case <-t.ch:
	default:
	}
	t.at = c.now.Add(d)
	c.timers[t] = struct{}{}
	c.fireLocked()
	return active
}

func (t *fakeTimer) Stop() bool {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	_, active := c.timers[t]
	delete(c.timers, t)
	return active
}

func (c *FakeClock) sleep(ctx context.Context, d time.Duration, worker bool) error {
	t := &fakeTimer{c: c, ch: make(chan time.Time, 1), worker: worker}
	c.mu.Lock()
	t.at = c.now.Add(d)
	c.timers[t] = struct{}{}
	if worker {
		c.workers++
	}
	c.fireLocked()
	c.mu.Unlock()
	select {
	case <-t.ch:
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		if _, active := c.timers[t]; active {
			delete(c.timers, t)
			if worker {
				c.workers--
			}
		}
		c.mu.Unlock()
		return context.Cause(ctx)
	}
}

// fireLocked fires the timers due at the clock's time. The count of
// sleeping workers drops as their timers fire, before they wake.
func (c *FakeClock) fireLocked() {
	for t := range c.timers {
		if t.at.After(c.now) {
			continue
		}
		delete(c.timers, t)
		if t.worker {
			c.workers--
		}
		select {
		case t.ch <- c.now:
		default:
		}
	}
}

// next returns the time of the earliest timer.
func (c *FakeClock) next() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var at time.Time
	for t := range c.timers {
		if at.IsZero() || t.at.Before(at) {
			at = t.at
		}
	}
	return at, !at.IsZero()
}

func (c *FakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
	c.fireLocked()
}

// SetFakeClockForTest makes the Manager read the time from c and wait on
// its timers. c stands for the world's time, so the Manager does not
// correct it from the CA's Date headers. Call it before the Manager's
// first use.
func SetFakeClockForTest(m *Manager, c *FakeClock) {
	st := m.state()
	st.clock.local, st.clock.fixed = c.Now, true
	st.clock.timers, st.clock.sleeps = c.timer, c.sleep
}

// Advance moves the clock d ahead, one due time after another: at each
// timer or plan of the Managers that comes due on the way, it stops, lets
// the due work run and waits for it to finish (every queued task done,
// every worker idle or waiting on the clock) before moving on. It fails
// when the work does not settle within a minute of real time.
func (c *FakeClock) Advance(d time.Duration, ms ...*Manager) error {
	target := c.Now().Add(d)
	for range 1_000_000 {
		if err := c.settle(ms); err != nil {
			return err
		}
		next, ok := c.next()
		for _, m := range ms {
			if at, planned := m.state().sched.earliest(); planned && (!ok || at.Before(next)) {
				next, ok = at, true
			}
		}
		if !ok || next.After(target) {
			c.set(target)
			return c.settle(ms)
		}
		c.set(next)
		for _, m := range ms {
			// The loop's timer fired; a plan due meanwhile wakes it too.
			select {
			case m.state().sched.wake <- struct{}{}:
			default:
			}
		}
	}
	return fmt.Errorf("autotls: Advance: more than a million due times in %v", d)
}

// Jump moves the clock d ahead at once, so that everything due on the way
// comes due together (as after a host's sleep), and waits for the
// Managers' work to settle (see Advance).
func (c *FakeClock) Jump(d time.Duration, ms ...*Manager) error {
	c.set(c.Now().Add(d))
	for _, m := range ms {
		select {
		case m.state().sched.wake <- struct{}{}:
		default:
		}
	}
	return c.settle(ms)
}

// Settle waits until the Managers' due work is done (see Advance).
func (c *FakeClock) Settle(ms ...*Manager) error { return c.settle(ms) }

func (c *FakeClock) settle(ms []*Manager) error {
	deadline := time.Now().Add(time.Minute)
	for calm := 0; calm < 2; {
		if c.idle(ms) {
			// Once more after the other goroutines ran: the checks of
			// schedule, queue and clock are not one atomic read.
			calm++
			runtime.Gosched()
			continue
		}
		calm = 0
		if time.Now().After(deadline) {
			return fmt.Errorf("autotls: the Managers' work did not settle in a minute (at %v): %s", c.Now(), c.busy(ms))
		}
		// Real time: the work may be waiting on the CA.
		time.Sleep(50 * time.Microsecond)
	}
	return nil
}

// busy describes what keeps the Managers from settling.
func (c *FakeClock) busy(ms []*Manager) string {
	var b strings.Builder
	for i, m := range ms {
		st := m.state()
		s := &st.sched
		s.mu.Lock()
		name, at, ok := s.plans.earliest()
		fmt.Fprintf(&b, "Manager %d: %d steps running, first plan %q at %v (%v); ", i, s.stepping, name, time.Unix(0, at), ok)
		s.mu.Unlock()
		q := &st.queue
		q.mu.Lock()
		fmt.Fprintf(&b, "%d tasks queued first, %d queued, %d workers; ", len(q.first), len(q.tasks)-q.head, q.running)
		q.mu.Unlock()
	}
	c.mu.Lock()
	fmt.Fprintf(&b, "%d workers sleeping on the clock", c.workers)
	c.mu.Unlock()
	return b.String()
}

// idle reports whether no step of the Managers is due or running, no task
// queued, and every running worker waits on the clock.
func (c *FakeClock) idle(ms []*Manager) bool {
	now := c.Now()
	running := 0
	for _, m := range ms {
		st := m.state()
		s := &st.sched
		s.mu.Lock()
		_, at, ok := s.plans.earliest()
		busy := s.stepping > 0 || (ok && at <= now.UnixNano())
		s.mu.Unlock()
		if busy {
			return false
		}
		q := &st.queue
		q.mu.Lock()
		queued := len(q.first) > 0 || q.head < len(q.tasks)
		running += q.running
		q.mu.Unlock()
		if queued {
			return false
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return running == c.workers
}

// earliest returns the time of the earliest plan.
func (s *schedule) earliest() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, at, ok := s.plans.earliest()
	return time.Unix(0, at), ok
}

// CompleteIndexForTest runs m's discovery of the stored certificates at
// once (unpaced), waits for it and closes m, which writes the schedule
// index of every stored name: storage as a Manager that ran for a while
// leaves it, for the next one to start from.
func CompleteIndexForTest(m *Manager) {
	m.state().fastDiscovery = true
	m.TLSConfig()
	<-m.state().discovered
	m.Close()
}
