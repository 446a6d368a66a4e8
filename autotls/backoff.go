package autotls

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/textclip"
	"github.com/tlsmint/tlsmint/record"
)

// A failure is what the Manager remembers of a name's last failed attempt.
// There is no cap on how many names have one: a record is kept while its
// back-off runs, and after that until forget — as long again as the
// back-off, so that a name failing again soon after waits twice as long —
// or, past forget, while the name's retry is planned or running (that
// attempt's back-off grows from it). A success removes it at once; the
// others are pruned when the number of records has doubled since the last
// pruning, so memory follows the names that are failing, not the names
// that ever failed.
type failure struct {
	until  time.Time
	forget time.Time
	n      int
	err    error
	at     time.Time
	// badType is the challenge type whose validation failed, tried last
	// next time.
	badType string
}

// storedBackoff is a CA's Retry-After for a name, kept in storage per
// issuer, account and name, so that a restarted Manager and every node of
// a fleet wait for it too.
type storedBackoff struct {
	Until time.Time `json:"until"`
	Error string    `json:"error"`
	At    time.Time `json:"at"`
}

// maxStoredError caps the error text kept with a stored backoff.
const maxStoredError = 1024

func backoffKey(iss *issuer, name string) string {
	return "backoff/" + iss.key + "/" + iss.who + "/" + storageName(name) + ".json"
}

// failures holds the failure records and the lapsed names, under one
// mutex. Its lock nests no other: pruning asks the schedule and the
// flights with it released.
type failures struct {
	mu     sync.Mutex
	byName map[string]*failure // see failure: no cap, pruned
	// sweep is the number of failure records at which they are pruned
	// next: twice what the last pruning left.
	sweep  int
	lapsed map[string]bool // names whose expired certificate was dropped
}

func (fs *failures) init() {
	fs.byName = make(map[string]*failure)
	fs.lapsed = make(map[string]bool)
}

// isLapsed reports whether name's certificate expired and is no longer
// served; the name is retried in the background until one is obtained.
func (fs *failures) isLapsed(name string) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.lapsed[name]
}

func (fs *failures) setLapsed(name string, v bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if v {
		fs.lapsed[name] = true
	} else {
		delete(fs.lapsed, name)
	}
}

// failureFor returns a copy of the remembered failure of name if its
// backoff has not elapsed: the record itself changes under fs.mu when
// the next attempt fails, which may run while the caller reads it (a
// handshake's attempt while the last one plans its retry).
func (fs *failures) failureFor(name string, now time.Time) *failure {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f := fs.byName[name]
	if f == nil || !now.Before(f.until) {
		return nil
	}
	c := *f
	return &c
}

// lastError returns the error of name's last failed attempt, if any.
func (fs *failures) lastError(name string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f := fs.byName[name]; f != nil {
		return f.err
	}
	return nil
}

// failedChallenge returns the challenge type that failed at name's last
// attempt.
func (fs *failures) failedChallenge(name string) string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f := fs.byName[name]; f != nil {
		return f.badType
	}
	return ""
}

// lastAt returns the time of each remembered failure, in Unix
// nanoseconds.
func (fs *failures) lastAt() map[string]int64 {
	at := map[string]int64{}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for name, f := range fs.byName {
		at[name] = f.at.UnixNano()
	}
	return at
}

// each calls add, with fs.mu held, for every name of infos that has a
// failure record, walking the smaller of the two.
func (fs *failures) each(infos map[string]*record.Certificate, add func(info *record.Certificate, f *failure)) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if len(infos) < len(fs.byName) {
		for name, info := range infos {
			if f := fs.byName[name]; f != nil {
				add(info, f)
			}
		}
		return
	}
	for name, f := range fs.byName {
		if info := infos[name]; info != nil {
			add(info, f)
		}
	}
}

// lastFailure returns the error of name's last failed attempt, if any.
func (m *Manager) lastFailure(name string) error { return m.st.failures.lastError(name) }

// recordFailure remembers a failure with a growing, jittered backoff and
// returns when the next attempt may be made. retryAfter is the CA's
// Retry-After when every issuer asked to wait (the shortest of them), zero
// otherwise; a longer one than the backoff is obeyed.
func (m *Manager) recordFailure(name string, err error, now time.Time, retryAfter time.Duration) time.Time {
	st := m.st
	until, prune := st.failures.record(name, err, now, m.failureBackoff(), retryAfter)
	if prune {
		st.pruneFailures(now)
	}
	return until
}

// record is recordFailure's bookkeeping, base the failure backoff; prune
// reports that the caller is to prune the records (see prunePending).
func (fs *failures) record(name string, err error, now time.Time, base, retryAfter time.Duration) (until time.Time, prune bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f, added := fs.recordLocked(name)
	wait := base << min(f.n, 20)
	if wait > maxFailureBackoff || wait <= 0 {
		wait = maxFailureBackoff
	}
	wait = jitter(wait)
	// A CA's Retry-After is obeyed when it asks for longer.
	if retryAfter > wait {
		wait = retryAfter
	}
	var ce *acme.ChallengeError
	if errors.As(err, &ce) {
		f.badType = ce.Type
	}
	f.n++
	f.err = err
	f.at = now
	f.until = now.Add(wait)
	f.forget = f.until.Add(wait)
	return f.until, added && fs.prunePending()
}

// recordLocked returns name's failure record, adding an empty one if it
// has none. It is called with fs.mu held.
func (fs *failures) recordLocked(name string) (f *failure, added bool) {
	if f = fs.byName[name]; f != nil {
		return f, false
	}
	f = &failure{}
	fs.byName[name] = f
	return f, true
}

// minFailureSweep is the number of failure records below which none is
// pruned.
const minFailureSweep = 1024

// prunePending reports whether the failure records are due for pruning
// (their number has doubled since the last), and if so makes the caller
// the one to prune. It is called with fs.mu held.
func (fs *failures) prunePending() bool {
	if len(fs.byName) < max(fs.sweep, minFailureSweep) {
		return false
	}
	fs.sweep = math.MaxInt // one pruning at a time
	return true
}

// pruneFailures drops the failure records past their forget time, except
// those of names whose retry is planned or running.
func (st *state) pruneFailures(now time.Time) {
	st.failures.prune(now, func(name string) bool { return st.sched.has(name) || st.flights.has(name) })
}

// prune drops the failure records past their forget time, except those
// of names busy reports. It holds fs.mu only to collect and to delete,
// never while it calls busy, so it nests no lock.
func (fs *failures) prune(now time.Time, busy func(name string) bool) {
	var old []string
	fs.mu.Lock()
	for name, f := range fs.byName {
		if !now.Before(f.forget) {
			old = append(old, name)
		}
	}
	fs.mu.Unlock()
	old = slices.DeleteFunc(old, busy)
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, name := range old {
		if f := fs.byName[name]; f != nil && !now.Before(f.forget) {
			delete(fs.byName, name)
		}
	}
	fs.sweep = 2 * len(fs.byName)
}

// retryAfter returns the CA's Retry-After carried by err, if any.
func retryAfter(err error) time.Duration {
	var p *acme.Problem
	if errors.As(err, &p) {
		return p.RetryAfter
	}
	return 0
}

// rememberBackoff records a stored Retry-After in memory and returns the
// error it stands for.
func (st *state) rememberBackoff(name string, b *storedBackoff) error {
	err := errors.New(b.Error)
	now := st.clock.now()
	if st.failures.remember(name, b, err) {
		st.pruneFailures(now)
	}
	return err
}

// remember is rememberBackoff's bookkeeping; prune reports that the
// caller is to prune the records (see prunePending).
func (fs *failures) remember(name string, b *storedBackoff, err error) (prune bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f, added := fs.recordLocked(name)
	if b.Until.After(f.until) {
		f.until, f.err, f.at = b.Until, err, b.At
		if forget := b.Until.Add(b.Until.Sub(b.At)); forget.After(f.forget) {
			f.forget = forget
		}
	}
	return added && fs.prunePending()
}

// clear forgets name's failure.
func (fs *failures) clear(name string) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	delete(fs.byName, name)
}

// persistBackoff writes the CA's Retry-After for name to storage, when the
// failure carried one. A failure to write is logged: the memory backoff
// still holds for this process.
func (m *Manager) persistBackoff(ctx context.Context, iss *issuer, name string, err error, until time.Time) {
	if retryAfter(err) <= 0 {
		return
	}
	store, serr := m.storage()
	if serr != nil {
		return
	}
	msg := textclip.Prefix(err.Error(), maxStoredError)
	b, _ := json.Marshal(storedBackoff{Until: until.UTC(), Error: msg, At: m.now().UTC()})
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if serr := store.Store(ctx, backoffKey(iss, name), b); serr != nil {
		m.st.log.Warn("autotls: storing the CA's Retry-After failed", "name", name, "err", serr)
		return
	}
	m.emit(Event{Type: EventRateLimited, Name: name, Issuer: iss.url, Err: err, RetryAt: until})
}

// loadBackoff returns the stored Retry-After for name, or nil.
func (m *Manager) loadBackoff(ctx context.Context, iss *issuer, name string) *storedBackoff {
	store, err := m.storage()
	if err != nil {
		return nil
	}
	raw, err := store.Load(ctx, backoffKey(iss, name))
	if err != nil {
		return nil
	}
	var b storedBackoff
	if json.Unmarshal(raw, &b) != nil || b.Until.IsZero() {
		return nil
	}
	return &b
}

// clearBackoff removes name's stored Retry-After after a success.
func (m *Manager) clearBackoff(ctx context.Context, iss *issuer, name string) {
	store, err := m.storage()
	if err != nil {
		return
	}
	if err := store.Delete(ctx, backoffKey(iss, name)); err != nil {
		m.st.log.Warn("autotls: removing a stored Retry-After failed", "name", name, "err", err)
	}
}

// emitFailure reports a failed attempt; for a renewal, with the serial,
// expiry and issuer of the certificate still served.
func (m *Manager) emitFailure(name string, current *entry, err error, retry time.Time) {
	ev := Event{Type: EventFailed, Name: name, Err: err, RetryAt: retry}
	if current != nil {
		ev.Issuer, ev.Serial, ev.NotAfter = current.iss.url, current.serial(), current.notAfter
	}
	m.emit(ev)
}

// storeFailure records a failed renewal in the stored value's metadata
// (last_failure), for operators reading storage. It runs under the name's
// lock; a failure to record is only logged.
func (m *Manager) storeFailure(ctx context.Context, iss *issuer, name string, failure error) {
	store, err := m.storage()
	if err != nil {
		return
	}
	b, err := store.Load(ctx, certKey(iss, name))
	if err != nil {
		return
	}
	s, err := decodeStored(b)
	if err != nil {
		return
	}
	msg := textclip.Prefix(failure.Error(), maxStoredError)
	s.LastFailure = &failureState{At: m.now().UTC(), Error: msg}
	if b, err = encodeStoredCert(s); err == nil {
		err = store.Store(ctx, certKey(iss, name), b)
	}
	if err != nil {
		m.st.log.Warn("autotls: recording renewal failure", "name", name, "err", err)
		return
	}
	m.indexFailed(iss, name, s)
}
