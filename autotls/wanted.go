package autotls

import (
	"context"
	"fmt"
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
	if m.st.isManaged(name) {
		return nil
	}
	if _, ok := parseIPName(name); ok && !m.AllowIPCertificates {
		return fmt.Errorf("%w: IP address %q (AllowIPCertificates is off)", ErrHostNotAllowed, name)
	}
	_, err := m.authorize(ctx, name, nil)
	return err
}

// notRenewed handles a background order that stillAllowed refused: the
// certificate in memory, if any, is served until it expires, when its
// expiry step asks again; after that, or with none in memory, the name is
// forgotten — nothing stays planned, and the stored certificate stays in
// storage for a handshake the policy allows again. It emits
// EventNotRenewed and returns the error for the flight.
func (m *Manager) notRenewed(name string, err error) error {
	st := m.st
	e := st.cache.get(name)
	if e != nil && m.now().Before(e.notAfter) {
		st.sched.at(m, name, e.notAfter)
	} else if e != nil {
		st.cache.remove(e)
	}
	st.setLapsed(name, false)
	ev := Event{Type: EventNotRenewed, Name: name, Err: err}
	if e != nil {
		ev.Issuer, ev.NotAfter, ev.Serial = e.iss.url, e.notAfter, e.serial()
	}
	m.emit(ev)
	return fmt.Errorf("autotls: not renewing %s: %w", name, err)
}
