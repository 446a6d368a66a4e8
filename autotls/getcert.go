package autotls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"sync"
	"time"

	"github.com/tlsmint/tlsmint/solvers"
)

// GetCertificate is a [crypto/tls.Config.GetCertificate] hook. It answers
// tls-alpn-01 challenges, serves a cached certificate, loads one from
// storage, or obtains one if the host policy allows the name. A
// ClientHello without a server name gets the certificate of
// [Manager.DefaultServerName].
//
// A cached certificate is served without allocating and without holding a
// lock across I/O. On a miss, one issuance per name runs at a time, across
// goroutines and (through the storage lock) across processes; the handshake
// waits for it at most HandshakeTimeout or until the client goes away,
// while the issuance goes on for the next handshake.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	st := m.state()
	if solvers.IsChallengeHello(hello) {
		if m.DisableTLSALPN01 {
			return nil, errors.New("autotls: tls-alpn-01 is disabled")
		}
		return st.alpn.GetCertificate(hello)
	}
	sni := hello.ServerName
	if sni == "" {
		sni = st.defaultName
	}
	// The exact lookup (cache.lookupExact) written out: a call fewer on
	// every hit, about 1 ns of 16 at 10,000 names (BENCHMARKS.md).
	c := &st.cache
	if sm := c.small.Load(); sm != nil {
		if cert := c.lookupSmall(sm, sni, false); cert != nil {
			return cert, nil
		}
	} else {
		v := c.read.Load()
		h := v.hash(sni)
		sh := v.shard(h)
		tag := tagOf(h, false)
		for g := h & v.gmask; ; g = (g + 1) & v.gmask {
			gr := sh.group(g)
			for mt := match(gr.ctrl, tag); mt != 0; mt &= mt - 1 {
				k := bits.TrailingZeros64(mt) >> 3 & (groupSize - 1)
				if s := &gr.slots[k]; sameName(s.name, sni) {
					if c.capacity > 0 {
						sh.meta[int(g)*groupSize+k].e.touch() // only eviction reads the bit
					}
					return s.cert, nil
				}
			}
			if hasEmpty(gr.ctrl) {
				break
			}
		}
	}
	if cert := c.lookupWild(sni); cert != nil {
		return cert, nil
	}
	return m.getSlow(st, hello, sni)
}

// getSlow serves a server name the hot path did not find as sent: sni is
// the client's server name, or DefaultServerName when it sent none.
func (m *Manager) getSlow(st *state, hello *tls.ClientHelloInfo, sni string) (*tls.Certificate, error) {
	if sni == "" {
		st.refusalCounts.noServerName.Add(1)
		return nil, fmt.Errorf("%w: the client sent no server name (SNI): set Manager.DefaultServerName to serve such clients", ErrInvalidName)
	}
	name, err := m.serverName(sni)
	if err != nil {
		st.refusalCounts.count(err)
		return nil, err
	}
	if c := st.cache.lookupFast(name); c != nil { // cached under its normal form
		return c, nil
	}
	ctx := hello.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	var remote net.Addr
	if hello.Conn != nil {
		remote = hello.Conn.RemoteAddr()
	}
	onDemand, err := m.authorize(ctx, name, remote)
	if err != nil {
		m.refused(name, err)
		return nil, err
	}
	// A Manager that cannot obtain certificates says so before storage or
	// the CA is touched (TLSConfig had no way to).
	if err := m.validate(st); err != nil {
		return nil, err
	}
	f, lead, err := m.joinFlight(name)
	if err != nil {
		return nil, err
	}
	// The leader's storage look-up counts against the handshake's wait.
	deadline := time.Now().Add(m.handshakeTimeout())
	if lead {
		m.leadFlight(f, name, onDemand)
	}
	return m.waitFlight(ctx, name, f, deadline)
}

// joinFlight returns the issuance of name in flight, or registers a new one
// that the caller must lead (lead is true).
func (m *Manager) joinFlight(name string) (f *flight, lead bool, err error) {
	return m.st.flights.join(name, &m.st.wg)
}

// flights holds the issuances in flight and whether the Manager is
// closed, under one mutex. Every goroutine of the Manager's is counted
// in its WaitGroup (wg.Add) under that mutex, once join or ifOpen found
// the Manager open; Close sets closed under it before it waits, so it
// waits for every one.
type flights struct {
	mu     sync.Mutex
	byName map[string]*flight
	closed bool
	// closeDone is closed when the first Close has ended.
	closeDone chan struct{}
}

func (fl *flights) init() {
	fl.byName = make(map[string]*flight)
	fl.closeDone = make(chan struct{})
}

// join returns the issuance of name in flight, or registers a new one
// that the caller must lead (lead is true, counted in wg); ErrClosed
// once the Manager is closed.
func (fl *flights) join(name string, wg *sync.WaitGroup) (f *flight, lead bool, err error) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.closed {
		return nil, false, ErrClosed
	}
	if f := fl.byName[name]; f != nil {
		return f, false, nil
	}
	f = &flight{done: make(chan struct{})}
	fl.byName[name] = f
	wg.Add(1)
	return f, true, nil
}

// finish removes name's flight: the next join registers a new one.
func (fl *flights) finish(name string) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	delete(fl.byName, name)
}

// has reports whether an issuance of name is in flight.
func (fl *flights) has(name string) bool {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.byName[name] != nil
}

// ifOpen calls f with the mutex held unless the Manager is closed, and
// reports whether it did: a goroutine f counts in the WaitGroup is one
// Close waits for.
func (fl *flights) ifOpen(f func()) bool {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.closed {
		return false
	}
	f()
	return true
}

// close marks the Manager closed and reports whether this call was the
// first; the first calls closeEnded when it has ended.
func (fl *flights) close() (first bool) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	first = !fl.closed
	fl.closed = true
	return first
}

// closeEnded ends waitClosed.
func (fl *flights) closeEnded() { close(fl.closeDone) }

// waitClosed waits for the first close's caller to call closeEnded.
func (fl *flights) waitClosed() { <-fl.closeDone }

// finish completes a flight and wakes its waiters.
func (m *Manager) finish(name string, f *flight, cert *tls.Certificate, err error) {
	st := m.st
	f.cert, f.err = cert, err
	st.flights.finish(name)
	close(f.done)
	// A step that came due while this flight ran found it in flight and
	// consumed its plan: plan the certificate again.
	if e := st.cache.get(name); e != nil && !st.sched.has(name) {
		m.plan(e)
	}
	st.wg.Done()
}

// leadFlight runs a handshake's flight: the storage look-up inline (a
// stored certificate is served without a goroutine hand-off), and an order
// from the CA in the background, so the handshake can stop waiting while
// the issuance goes on. A panic in either part fails the flight (see
// recovered) instead of leaving its waiters hanging or, in the background,
// ending the process.
func (m *Manager) leadFlight(f *flight, name string, onDemand bool) {
	st := m.st
	m.startBackground()
	defer func() {
		if v := recover(); v != nil {
			m.finish(name, f, nil, m.recovered(name, v))
		}
	}()
	// The discovery and the watcher wait for these loads to pause.
	st.lastLoad.Store(int64(time.Since(st.born)))
	ctx, cancel := context.WithTimeout(st.ctx, m.handshakeTimeout())
	defer cancel()
	cert, err := m.fromStorage(ctx, name, nil, false)
	slow := ctx.Err() != nil && st.ctx.Err() == nil
	if cert != nil || (err != nil && !slow) {
		m.finish(name, f, cert, err)
		return
	}
	release := func() {}
	if onDemand {
		r, ok := st.limiter.enter()
		if !ok {
			err := fmt.Errorf("%w: too many on-demand issuances in flight", ErrOnDemandLimited)
			st.refusalCounts.count(err)
			m.finish(name, f, nil, err)
			return
		}
		release = r
	}
	go func() {
		defer release()
		m.runFlight(name, f, func() bool { return st.managed.has(name) }, func() (*tls.Certificate, error) {
			ctx, cancel := context.WithTimeout(st.ctx, issueTimeout)
			defer cancel()
			// Orders started by handshakes are capped too, so a burst of
			// new names sends the CA a bounded number of orders at once.
			select {
			case st.handshakeSlots <- struct{}{}:
				defer func() { <-st.handshakeSlots }()
			case <-ctx.Done():
				return nil, fmt.Errorf("autotls: obtaining %s: waiting for an order slot: %w", name, ctx.Err())
			}
			if slow {
				// Storage did not answer within the handshake's time: the
				// whole issuance, storage look-up first, gets the
				// issuance's.
				return m.issue(ctx, name, onDemand, false)
			}
			return m.order(ctx, name, onDemand, false, nil)
		})
	}()
}

// runFlight runs the issuance of a flight in the background: a panic in
// issue fails the flight (see recovered) rather than the process, the
// flight is finished so its waiters wake, and after a failure the name is
// planned again after its backoff when retry says so.
func (m *Manager) runFlight(name string, f *flight, retry func() bool, issue func() (*tls.Certificate, error)) {
	var cert *tls.Certificate
	var err error
	defer func() {
		if v := recover(); v != nil {
			cert, err = nil, m.recovered(name, v)
		}
		m.finish(name, f, cert, err)
		if err != nil && retry() {
			m.retryLater(name, m.now())
		}
	}()
	cert, err = issue()
}

// serverName normalises an SNI value and applies the IP rule.
func (m *Manager) serverName(sni string) (string, error) {
	if a, ok := parseIPName(sni); ok {
		if !m.AllowIPCertificates {
			return "", fmt.Errorf("%w: IP address %q (AllowIPCertificates is off)", ErrHostNotAllowed, sni)
		}
		return a.String(), nil
	}
	if len(sni) > 0 && sni[0] == '*' {
		return "", fmt.Errorf("%w: wildcard %q is not a server name", ErrInvalidName, clip(sni))
	}
	return NormalizeName(sni)
}

// authorize applies the host policy; it reports whether the name is an
// on-demand one (subject to the rate limits).
func (m *Manager) authorize(ctx context.Context, name string, remote net.Addr) (onDemand bool, err error) {
	st := m.st
	if st.managed.has(name) {
		return false, nil
	}
	var hostErr error
	if m.Hosts != nil {
		if hostErr = m.Hosts(ctx, name); hostErr == nil {
			return false, nil
		}
	}
	if od := m.OnDemand; od != nil && od.Decide != nil {
		if err := od.Decide(ctx, name, remote); err != nil {
			return false, fmt.Errorf("%w: %q refused on demand: %w", ErrHostNotAllowed, name, err)
		}
		return true, nil
	}
	if hostErr != nil {
		if errors.Is(hostErr, ErrHostNotAllowed) {
			return false, hostErr
		}
		return false, fmt.Errorf("%w: %q: %w", ErrHostNotAllowed, name, hostErr)
	}
	return false, fmt.Errorf("%w: %q (no host policy)", ErrHostNotAllowed, name)
}

// waitFlight waits for an issuance on behalf of one handshake, until
// deadline at the latest.
func (m *Manager) waitFlight(ctx context.Context, name string, f *flight, deadline time.Time) (*tls.Certificate, error) {
	select {
	case <-f.done:
		return f.cert, f.err
	default:
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-f.done:
		return f.cert, f.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %s: %w", ErrIssuancePending, name, context.Cause(ctx))
	case <-t.C:
		return nil, fmt.Errorf("%w: %s: gave up after %v", ErrIssuancePending, name, m.handshakeTimeout())
	}
}
