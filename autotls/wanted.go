package autotls

import (
	"context"
	"fmt"
	"time"
)

// stillAllowed reports why a background order for name — a renewal, a
// retry, the replacement of an expired or revoked certificate — must not
// go to the CA, or nil when it may. A name given to Manage may always be
// ordered; any other only while the host policy, or OnDemand's decision
// (asked with a nil client address), still allows it, as a handshake for
// it would need. A certificate a handshake could no longer get is not
// worth a CA's order, nor its failed validations once the name's DNS
// points elsewhere.
func (m *Manager) stillAllowed(ctx context.Context, name string) error {
	if m.st.managed.has(name) {
		return nil
	}
	if _, ok := parseIPName(name); ok && !m.AllowIPCertificates {
		return fmt.Errorf("%w: IP address %q (AllowIPCertificates is off)", ErrHostNotAllowed, name)
	}
	_, err := m.authorize(ctx, name, nil)
	return err
}

// notRenewed handles a background order that stillAllowed refused for
// name, whose certificate is e (nil: the one in memory, if any). The
// certificate is served until it expires, and the policy is asked again
// meanwhile, at shrinking intervals (an eighth of the time left, at least
// an hour, and at expiry), so that a policy that failed for a moment — a
// database behind OnDemand.Decide that did not answer — does not cost
// the renewal. Once it has expired, or with no certificate, the name is
// forgotten: nothing stays planned, and the stored certificate stays in
// storage for a handshake the policy allows again. It emits
// EventNotRenewed and returns the error for the flight.
func (m *Manager) notRenewed(name string, e *entry, err error) error {
	st := m.st
	cached := st.cache.get(name)
	if e == nil {
		e = cached
	}
	now := m.now()
	if e != nil && now.Before(e.notAfter) {
		st.sched.at(m, name, recheckAt(now, e.notAfter))
	} else if cached != nil {
		st.cache.remove(cached)
	}
	st.failures.setLapsed(name, false)
	ev := Event{Type: EventNotRenewed, Name: name, Err: err}
	if e != nil {
		ev.Issuer, ev.NotAfter, ev.Serial = e.iss.url, e.notAfter, e.serial()
	}
	m.emit(ev)
	return fmt.Errorf("autotls: not renewing %s: %w", name, err)
}

// refusedRecheckMin is the shortest wait before the policy is asked again
// about a name it refused a renewal.
const refusedRecheckMin = time.Hour

// recheckAt is when to ask the policy again about a refused name whose
// certificate expires at notAfter.
func recheckAt(now, notAfter time.Time) time.Time {
	next := now.Add(max(refusedRecheckMin, notAfter.Sub(now)/8))
	if next.After(notAfter) {
		return notAfter
	}
	return next
}
