package autotls

import (
	"hash/fnv"
	"time"
)

// Renewal planning. Every certificate gets its renewal time from its own
// NotBefore/NotAfter, so certificates of 6, 45, 90 or 200 days need no
// configuration, and from the CA's ACME Renewal Information when it offers
// it.

const (
	// shortLifetime: certificates living this long or less are renewed
	// when half their lifetime is left, longer ones when a third is.
	shortLifetime = 10 * 24 * time.Hour
	// windowShare is the width of the Manager's own renewal window, as a
	// share of the lifetime: wide enough that a fleet's certificates, or a
	// thousand issued in the same minute, do not renew together.
	windowShare = 10
	// latestShare: whatever ARI says, renewal is not planned later than
	// when a tenth of the lifetime is left.
	latestShare = 10
)

// Reasons a renewal time was chosen, as reported in events and
// [record.Certificate].
const (
	// ReasonSchedule: the Manager's own window, ending when a third of the
	// lifetime is left (half, for certificates of ten days or less).
	ReasonSchedule = "schedule"
	// ReasonARI: a random point in the CA's suggested window (RFC 9773).
	ReasonARI = "ari"
	// ReasonARIPast: the CA's suggested window has already begun or
	// passed (revocation, CA incident): renew at once.
	ReasonARIPast = "ari-window-passed"
)

// ownWindow is the Manager's renewal window for a certificate.
func ownWindow(notBefore, notAfter time.Time) (start, end time.Time) {
	life := notAfter.Sub(notBefore)
	left := life / 3
	if life <= shortLifetime {
		left = life / 2
	}
	end = notAfter.Add(-left)
	return end.Add(-life / windowShare), end
}

// spread returns a fraction in [0, 1) fixed for one certificate, so that
// every node and every restart pick the same point in a window, while
// different certificates spread uniformly over it.
func spread(name string, serial []byte) float64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write(serial)
	return float64(h.Sum64()>>11) / (1 << 53)
}

// usableARI reports whether a suggested window can be used for a
// certificate: well formed, and ending before the certificate expires. A
// window entirely in the past — even before the certificate was issued,
// as CAs answer for a revoked one — is usable: it means renew now.
func usableARI(a *ariState, notBefore, notAfter time.Time) bool {
	if a == nil || a.WindowStart.IsZero() || a.WindowEnd.IsZero() {
		return false
	}
	return !a.WindowEnd.Before(a.WindowStart) && !a.WindowEnd.After(notAfter)
}

// planRenewal returns when to renew a certificate and why: at a point of the
// CA's window that is fixed per certificate (or at once when the window has
// begun), else at such a point of the Manager's own window, never later
// than when a tenth of the lifetime is left.
func planRenewal(name string, serial []byte, notBefore, notAfter time.Time, a *ariState, now time.Time) (time.Time, string) {
	frac := spread(name, serial)
	life := notAfter.Sub(notBefore)
	latest := notAfter.Add(-life / latestShare)
	if usableARI(a, notBefore, notAfter) {
		if !a.WindowEnd.After(now) {
			// The window has passed (revocation, CA incident).
			return now, ReasonARIPast
		}
		at := a.WindowStart.Add(time.Duration(frac * float64(a.WindowEnd.Sub(a.WindowStart))))
		if at.After(latest) {
			at = latest
		}
		if at.Before(now) {
			at = now // RFC 9773: a chosen time in the past means now
		}
		return at, ReasonARI
	}
	start, end := ownWindow(notBefore, notAfter)
	return start.Add(time.Duration(frac * float64(end.Sub(start)))), ReasonSchedule
}

// RenewalDeadline returns the time by which the Manager renews a
// certificate valid from notBefore to notAfter, given the CA's suggested
// renewal window (RFC 9773; zero times: none): the end of that window,
// but no later than when a tenth of the lifetime is left; without a
// usable window (none, malformed, or ending after notAfter), when a third
// of the lifetime is left (half, for lifetimes of ten days or less). The
// Manager plans each renewal at a point before it (see [record.Certificate]'s
// RenewBy, which also accounts for the floor and the catch-up after a
// restart); a view judges by it a certificate the Manager did not plan,
// such as one an ACME relay issued. It is zero when notBefore is zero
// (the lifetime is not known) or notAfter is not after notBefore.
func RenewalDeadline(notBefore, notAfter, ariWindowStart, ariWindowEnd time.Time) time.Time {
	var a *ariState
	if !ariWindowStart.IsZero() || !ariWindowEnd.IsZero() {
		a = &ariState{WindowStart: ariWindowStart, WindowEnd: ariWindowEnd}
	}
	return renewDeadline(notBefore, notAfter, a)
}

// renewDeadline is the latest time planRenewal chooses for a certificate
// (before the floor and the catch-up): the end of the CA's window, capped
// at a tenth of the lifetime left, when it is usable, else the end of the
// Manager's own window. Zero: the lifetime is not known.
func renewDeadline(notBefore, notAfter time.Time, a *ariState) time.Time {
	if notBefore.IsZero() || !notAfter.After(notBefore) {
		return time.Time{}
	}
	if usableARI(a, notBefore, notAfter) {
		latest := notAfter.Add(-notAfter.Sub(notBefore) / latestShare)
		if a.WindowEnd.Before(latest) {
			return a.WindowEnd
		}
		return latest
	}
	_, end := ownWindow(notBefore, notAfter)
	return end
}

// renewBy is the deadline the Manager works to for e: its window's end
// (renewDeadline), or e's planned renewal when that is later — the floor
// of a new certificate, the catch-up of one found overdue at start-up —
// or when the lifetime is not known. It is never before e.renewAt.
func renewBy(notBefore, notAfter time.Time, a *ariState, renewAt time.Time) time.Time {
	if d := renewDeadline(notBefore, notAfter, a); d.After(renewAt) {
		return d
	}
	return renewAt
}

// planEntry sets e's renewal time and reason. It is the one place a plan
// is made — for a certificate obtained here, loaded from storage (another
// node's, or this node's before a restart), or given new renewal
// information — so every node of a fleet judges one certificate alike.
// It is planRenewal's window with a floor: see renewFloor.
func planEntry(e *entry, now time.Time) {
	e.renewAt, e.reason = planRenewal(e.name, e.cert.Leaf.SerialNumber.Bytes(), e.notBefore, e.notAfter, e.ari, now)
	if floor := renewFloor(e); e.renewAt.Before(floor) {
		e.renewAt = floor
	}
}

// renewFloorAge caps the age before which a certificate is not renewed
// (see renewFloor).
const renewFloorAge = 6 * time.Hour

// renewFloor is the earliest a certificate may be renewed: a twentieth of
// its lifetime (at most six hours) after it was obtained, as the
// Manager's clock read then (stored with it, so every node and a restart
// use the same floor; for a certificate the Manager did not order, an
// import, after its NotBefore). So a certificate that looks due the
// moment it arrives — a local clock the Manager could not correct (see
// [ClockSkewTolerance]), a CA whose renewal information is in the past
// for every certificate, a CA that issues certificates already in their
// renewal window — is not ordered again at once, in a loop stopped only
// by the CA's rate limits. The one exception is a window of the CA's
// renewal information that has passed for a certificate that did not
// itself replace one so marked (a revocation): it is renewed at once.
func renewFloor(e *entry) time.Time {
	if e.reason == ReasonARIPast && !e.ariRenewed {
		return time.Time{}
	}
	if !e.floor.IsZero() {
		return e.floor
	}
	return e.notBefore.Add(floorAge(e.notBefore, e.notAfter))
}

// floorAge is the age before which a certificate is not renewed.
func floorAge(notBefore, notAfter time.Time) time.Duration {
	return min(notAfter.Sub(notBefore)/20, renewFloorAge)
}

// catchUpWindow caps the spread of renewals found overdue at start-up.
const catchUpWindow = time.Hour

// catchUp returns when to renew a certificate planned for at, read at
// start-up (from the index, by discovery, or loaded from storage): at
// itself when it is ahead, else — the Manager was down when it came due —
// a point fixed per name in the next hour (or quarter of the time left,
// when shorter), so that names that came due during the downtime keep a
// spread, whatever order they are read in, instead of lining up at once.
// A certificate with less than a tenth of its lifetime left (notBefore
// zero: not known) is renewed at once.
func (m *Manager) catchUp(name string, at, notBefore, notAfter time.Time) time.Time {
	now := m.now()
	if !at.Before(now) {
		return at
	}
	if !notBefore.IsZero() && !now.Before(notAfter.Add(-notAfter.Sub(notBefore)/latestShare)) {
		return now
	}
	w := min(m.st.catchUpWindow, notAfter.Sub(now)/4)
	if w <= 0 {
		return now
	}
	return now.Add(time.Duration(spread(name, nil) * float64(w)))
}
