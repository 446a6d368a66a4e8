package autotls

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tlsmint/tlsmint/acme"
)

// ClockSkewTolerance is how far the local clock may be from a CA's before
// the Manager plans on the CA's time. The Manager compares its clock with
// the Date header of every answer from its CAs (and with a new
// certificate's NotBefore, for a clock that runs behind); beyond the
// tolerance it emits [EventClockSkew], logs one line naming the skew, and
// reads the time as the CA sees it — renewal times, expiry, back-offs —
// until the clocks agree again. A host whose clock runs 40 days ahead (a
// VM restored from a snapshot, a dead RTC) so neither thinks a new
// certificate due the moment it arrives nor drops one it still may serve.
// A skew of more than a year is taken for a broken Date header and not
// followed. Whatever the skew, no certificate is renewed before its floor
// (see the package doc, "Bounds on orders").
const ClockSkewTolerance = time.Minute

// maxSkewCorrection is the largest skew the Manager corrects: a CA's Date
// header further off than a year is taken for a broken one.
const maxSkewCorrection = 365 * 24 * time.Hour

// clock is the Manager's one source of time: the local clock (time.Now;
// tests set another) corrected by the CA's when the two disagree by more
// than ClockSkewTolerance, and the timers the lifecycle waits on (the
// schedule's, back-offs, the pacing of orders, the retries of the
// start-up's storage list and of the storage watch; the pacing of the
// start-up's reads stays on real time, see awaitQuiet). Tests
// replace both with a clock they advance (see export_test.go), so that a
// week of renewals, retries and rate limits runs in milliseconds; time
// that is not the lifecycle's — network deadlines, the CA's own validity,
// durations measured for logs — stays on the real clock.
type clock struct {
	local func() time.Time
	// timers makes the timers and sleeps waits on them; nil means real
	// ones. A test's sleeps counts the waits of the background queue's
	// workers (worker set), so that it can tell when every worker waits
	// on the clock.
	timers func(d time.Duration) clockTimer
	sleeps func(ctx context.Context, d time.Duration, worker bool) error
	// fixed: the correction is never applied (tests whose clock stands
	// for the world's time, which the test CA does not follow).
	fixed bool
	// offset is how far the local clock is ahead of the CA's, in
	// nanoseconds, when that is beyond the tolerance; zero otherwise.
	offset atomic.Int64
	// skew is the last measured difference, in nanoseconds.
	skew atomic.Int64

	mu sync.Mutex // serialises changes of offset and their events
}

// A clockTimer is a [time.Timer] of the Manager's clock.
type clockTimer interface {
	// C is the channel the time is sent on when the timer fires.
	C() <-chan time.Time
	// Reset and Stop are time.Timer's.
	Reset(d time.Duration) bool
	Stop() bool
}

type realTimer struct{ *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.Timer.C }

// newTimer returns a timer of the clock that fires after d.
func (c *clock) newTimer(d time.Duration) clockTimer {
	if c.timers != nil {
		return c.timers(d)
	}
	return realTimer{time.NewTimer(d)}
}

// sleep waits d on the clock, or until ctx ends (it returns ctx's cause
// then). worker says that the caller is a worker of the background
// queue (see clock.sleeps).
func (c *clock) sleep(ctx context.Context, d time.Duration, worker bool) error {
	if d <= 0 {
		return ctx.Err()
	}
	if c.sleeps != nil {
		return c.sleeps(ctx, d, worker)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// now is the time as the Manager sees it.
func (c *clock) now() time.Time {
	t := c.local()
	if o := c.offset.Load(); o != 0 {
		t = t.Add(-time.Duration(o))
	}
	return t
}

// measured records a skew (local minus CA) and reports the new offset and
// whether it changed: when the skew goes beyond the tolerance, comes back
// within it, or moves by more than the tolerance.
func (c *clock) measured(skew time.Duration) (time.Duration, bool) {
	c.skew.Store(int64(skew))
	if c.fixed {
		return 0, false
	}
	next := skew
	if next.Abs() <= ClockSkewTolerance {
		next = 0
	}
	if next.Abs() > maxSkewCorrection {
		// Not a clock that drifted or a VM restored from a snapshot,
		// but a Date header that is wrong: not followed.
		return time.Duration(c.offset.Load()), false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := time.Duration(c.offset.Load())
	if (cur == 0) == (next == 0) && (next-cur).Abs() <= ClockSkewTolerance {
		return cur, false
	}
	c.offset.Store(int64(next))
	return next, true
}

// ClockSkew reports how far the Manager's local clock was from its CA's at
// the last answer (positive: the local clock is ahead), and the correction
// the Manager applies: the skew when it is beyond ClockSkewTolerance, else
// zero.
func (m *Manager) ClockSkew() (measured, corrected time.Duration) {
	st := m.state()
	return time.Duration(st.clock.skew.Load()), time.Duration(st.clock.offset.Load())
}

// skewObserver measures the skew from every answer of the Manager's CAs.
type skewObserver struct{ m *Manager }

// ObserveExchange implements acme.Observer.
func (o skewObserver) ObserveExchange(e acme.Exchange) {
	switch {
	case e.ServerDate.IsZero():
		return
	case e.Operation == acme.OpDirectory, e.Operation == acme.OpRenewalInfo, e.Operation == acme.OpNewNonce:
		// GETs and HEADs a cache may have answered with an old Date:
		// only the answers to POSTs, which no cache keeps, are used.
		return
	}
	// The Date header has one-second resolution: the CA's time was in
	// [ServerDate, ServerDate+1s) when it answered, a moment ago.
	skew := o.m.st.clock.local().Sub(e.ServerDate.Add(500 * time.Millisecond))
	o.m.clockMeasured(skew, e.Directory)
}

// notBeforeSkew checks a new certificate's NotBefore against the clock: a
// NotBefore later than now (beyond the tolerance) means a local clock
// behind the CA's, whatever the Date headers said (a CA that sends none).
// CAs backdate NotBefore, so an early one says nothing.
func (m *Manager) notBeforeSkew(notBefore time.Time, issuer string) {
	if ahead := notBefore.Sub(m.now()); ahead > ClockSkewTolerance {
		m.clockMeasured(m.st.clock.local().Sub(notBefore), issuer)
	}
}

// clockMeasured applies a measured skew, and reports a change of the
// correction: one event and one log line.
func (m *Manager) clockMeasured(skew time.Duration, issuer string) {
	st := m.st
	off, changed := st.clock.measured(skew)
	if !changed {
		return
	}
	if off == 0 {
		st.log.Info("autotls: the local clock agrees with the CA's again", "issuer", issuer, "skew", skew.Round(time.Second).String())
	} else {
		st.log.Warn("autotls: the local clock is off from the CA's; planning on the CA's time", "issuer", issuer, "skew", skew.Round(time.Second).String(), "tolerance", ClockSkewTolerance.String())
	}
	m.emit(Event{Type: EventClockSkew, Issuer: issuer, Skew: off})
}
