package autotls

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/storage"
)

// ACME Renewal Information (RFC 9773): the Manager asks the CA when to
// renew each certificate, at a random point of the first six hours after
// issuance, when a certificate is loaded
// without stored renewal information, and again when the CA's Retry-After
// says.
const (
	minARIPoll     = time.Minute
	maxARIPoll     = 24 * time.Hour
	defaultARIPoll = 6 * time.Hour // when the CA sends no Retry-After
	ariErrorPoll   = time.Hour     // after a failed or malformed answer
	ariTimeout     = 30 * time.Second
	ariStoreWait   = 5 * time.Second // the lock wait to store renewal info
	ariBusyRetry   = time.Second     // when another poll of the name runs
	ariLoadSpread  = time.Minute     // first polls of loaded certificates
	ariFirstSpread = defaultARIPoll  // first polls of new certificates
)

// enqueueARI queues an ARI poll for e.
func (m *Manager) enqueueARI(e *entry) {
	m.enqueue(task{name: e.name, run: func(ctx context.Context) { m.pollARI(ctx, e) }})
}

// pollARI fetches the renewal information of e's certificate, plans its
// renewal from it and stores it with the certificate. A CA without ARI, or
// an answer that cannot be used, leaves the Manager's own schedule.
func (m *Manager) pollARI(ctx context.Context, e *entry) {
	st := m.st
	cur := st.cache.get(e.name)
	if cur == nil {
		// Evicted meanwhile (CacheCapacity): keep the name planned; the
		// step loads it again and polls then.
		m.plan(e)
		return
	}
	if cur.cert != e.cert || !cur.ariPoll.Equal(e.ariPoll) {
		return // replaced or polled meanwhile; the new entry has its own plan
	}
	if _, busy := st.ariBusy.LoadOrStore(e.name, true); busy {
		// The poll of the certificate this one replaced is still being
		// stored: come back shortly rather than drop this one.
		st.sched.at(m, e.name, m.now().Add(ariBusyRetry))
		return
	}
	defer st.ariBusy.Delete(e.name)
	if until, held := cur.iss.ariHeld(m.now()); held {
		m.replan(cur, cur.with(func(x *entry) { x.ariPoll = until.Add(jitter(time.Minute)) }))
		return
	}
	ctx, cancel := context.WithTimeout(ctx, ariTimeout)
	defer cancel()
	ri, err := cur.iss.ari.RenewalInfo(ctx, cur.cert.Leaf)
	now := m.now()
	if errors.Is(err, acme.ErrNoRenewalInfo) {
		cur.iss.noARI.Store(true)
		m.replan(cur, cur.with(func(x *entry) { x.ariPoll = time.Time{} }))
		return
	}
	if err != nil {
		st.log.Warn("autotls: fetching renewal information failed; keeping the current plan", "name", cur.name, "err", err)
		next := now.Add(jitter(ariErrorPoll))
		cur.iss.ariHold.Store(next.UnixNano())
		m.replan(cur, cur.with(func(x *entry) { x.ariPoll = next }))
		return
	}
	wait := defaultARIPoll
	if ri.RetryAfter > 0 {
		wait = min(max(ri.RetryAfter, st.minARIPoll), maxARIPoll)
	}
	a := &ariState{
		WindowStart:    ri.SuggestedWindow.Start,
		WindowEnd:      ri.SuggestedWindow.End,
		ExplanationURL: ri.ExplanationURL,
		NextPoll:       now.Add(wait).UTC(),
	}
	if !usableARI(a, cur.notBefore, cur.notAfter) {
		st.log.Warn("autotls: the CA's renewal window cannot be used (it ends after expiry or is malformed); keeping the Manager's own schedule", "name", cur.name, "window_start", a.WindowStart, "window_end", a.WindowEnd)
	}
	ne := cur.with(func(x *entry) {
		x.ari = a
		x.ariPoll = a.NextPoll
		planEntry(x, now)
		if x.reason == ReasonARIPast && x.renewAt.After(now) {
			st.log.Warn("autotls: the CA's renewal window for a certificate that replaced one it had due asks to renew it at once too; not before it is older", "name", x.name, "renew_at", x.renewAt, "window_start", a.WindowStart, "window_end", a.WindowEnd)
		}
	})
	if !m.replan(cur, ne) {
		return
	}
	m.storeARI(ctx, ne)
	if !ne.renewAt.Equal(cur.renewAt) {
		m.indexPut(ne)
		m.emit(Event{Type: EventScheduled, Name: ne.name, Issuer: ne.iss.url, NotAfter: ne.notAfter, Serial: ne.serial(), RenewAt: ne.renewAt, Reason: ne.reason})
	}
}

// replan swaps old for e in the cache, if old is still current, and plans
// e's next step.
func (m *Manager) replan(old, e *entry) bool {
	if !m.st.cache.swap(old, e) {
		if m.st.cache.get(old.name) == nil {
			// Evicted meanwhile: the name keeps a plan, and its step
			// loads it again.
			m.plan(e)
		}
		return false
	}
	m.plan(e)
	return true
}

// storeARI writes e's renewal information into its stored value, under the
// name's lock and only if storage still holds e's certificate, so that a
// newer certificate another node stored is never overwritten. It gives up
// (the information stays in memory) when the lock is busy.
func (m *Manager) storeARI(ctx context.Context, e *entry) {
	store, err := m.storage()
	if err != nil || e.unstored != nil {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, ariStoreWait)
	defer cancel()
	unlock, err := store.Lock(lctx, m.lockName(e.name))
	if err != nil {
		return
	}
	defer unlock()
	b, err := store.Load(ctx, certKey(e.iss, e.name))
	if err != nil {
		return
	}
	s, err := decodeStored(b)
	if err != nil || !holdsLeaf(s, e.cert.Certificate[0]) {
		return
	}
	s.ARI = e.ari
	if b, err = encodeStoredCert(s); err == nil {
		err = store.Store(ctx, certKey(e.iss, e.name), b)
	}
	if err != nil {
		m.st.log.Warn("autotls: storing renewal information failed", "name", e.name, "err", err)
	}
}

// holdsLeaf reports whether the stored value's first certificate is leaf.
func holdsLeaf(s *storedCert, leaf []byte) bool { return bytes.Equal(s.leafDER(), leaf) }

// enqueueStore queues another attempt to store e, whose Store failed.
func (m *Manager) enqueueStore(e *entry) {
	m.enqueue(task{name: e.name, run: func(ctx context.Context) { m.retryStore(ctx, e) }})
}

// retryStore stores a certificate whose Store failed, under the name's
// lock, unless storage meanwhile holds one that expires no earlier.
func (m *Manager) retryStore(ctx context.Context, e *entry) {
	st := m.st
	if st.cache.get(e.name) != e || e.unstored == nil {
		return
	}
	store, err := m.storage()
	if err != nil {
		return
	}
	lockCtx, unlock, err := storage.LockContext(ctx, store, m.lockName(e.name))
	if err != nil {
		st.log.Warn("autotls: retrying the Store: locking failed", "name", e.name, "err", err)
		m.plan(e)
		return
	}
	defer unlock()
	stored := e.with(func(x *entry) { x.unstored = nil })
	if have, err := m.loadStored(lockCtx, e.name); err == nil && !have.notAfter.Before(e.notAfter) {
		m.replan(e, stored) // another node stored one as good
		return
	}
	if err := store.Store(lockCtx, certKey(e.iss, e.name), e.unstored); err != nil {
		st.log.Warn("autotls: retrying the Store failed; trying again later", "name", e.name, "err", err)
		m.plan(e)
		return
	}
	if m.replan(e, stored) {
		m.emit(Event{Type: EventStored, Name: e.name, Issuer: e.iss.url, NotAfter: e.notAfter, Serial: e.serial()})
	}
}
