package watchdog

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/revocation"
)

// Probe runs one round now: it probes every target — each of Listeners
// with each of Names (or every name the Manager holds), then Targets — at
// most Concurrency at a time, records the results for [Watchdog.Last],
// calls OnResult and OnProblem, and returns the results in target order.
//
// Problems found are in the results, not in the error. The error reports
// what kept the round from being complete: the Manager's certificates
// could not be listed (the round still probes what it can), ctx ended (the
// results so far are returned, and neither recorded nor reported), or
// ErrClosed.
func (w *Watchdog) Probe(ctx context.Context) ([]Result, error) {
	w.init()
	if w.isClosed() {
		return nil, ErrClosed
	}
	targets, infos, listErr := w.targets(ctx)
	results := make([]Result, len(targets))
	var wg sync.WaitGroup
	started := 0
	for i, t := range targets {
		if w.acquire(ctx) != nil {
			break
		}
		started++
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.release()
			results[i] = w.check(ctx, t, infos, listErr)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return results[:started], errors.Join(listErr, err)
	}
	w.mu.Lock()
	prev := w.last
	w.last = append([]Result(nil), results...)
	w.mu.Unlock()
	w.report(results, prev)
	return results, listErr
}

// Check probes one target now, within the Concurrency limit, and returns
// what it found; a managed target reads the Manager's certificates first.
// It neither records the result for Last nor calls OnResult or OnProblem.
// The error is ErrClosed or ctx's, when the probe could not start.
func (w *Watchdog) Check(ctx context.Context, t Target) (Result, error) {
	w.init()
	if w.isClosed() {
		return Result{}, ErrClosed
	}
	var (
		infos   []record.Certificate
		listErr error
	)
	if t.Managed && w.Manager != nil {
		infos, listErr = w.Manager.Certificates(ctx)
		if listErr != nil {
			listErr = fmt.Errorf("watchdog: listing the Manager's certificates: %w", listErr)
		}
	}
	if err := w.acquire(ctx); err != nil {
		return Result{}, err
	}
	defer w.release()
	return w.check(ctx, t, infos, listErr), nil
}

func (w *Watchdog) acquire(ctx context.Context) error {
	select {
	case w.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *Watchdog) release() { <-w.sem }

// check probes t and inspects what it serves. infos are the Manager's
// certificates, and listErr the failure to list them.
func (w *Watchdog) check(ctx context.Context, t Target, infos []record.Certificate, listErr error) (r Result) {
	r.Target = t
	defer func() {
		if p := recover(); p != nil {
			w.logger().Error("watchdog: probe panicked", "target", t.String(), "panic", p, "stack", string(debug.Stack()))
			r.Problems = append(r.Problems, fmt.Errorf("watchdog: probe of %s panicked: %v", t, p))
		}
	}()
	name, ip, err := serverName(t)
	if err == nil && t.Managed && w.Manager == nil {
		err = fmt.Errorf("%w: %s is managed but Watchdog.Manager is nil", ErrInvalidTarget, t)
	}
	if err != nil {
		r.Time, r.Problems = w.now(), []error{err}
		return r
	}
	chain, latency, err := w.handshake(ctx, t.Addr, name, ip)
	r.Time, r.Latency = w.now(), latency
	if err != nil {
		r.Problems = []error{err}
		return r
	}
	r.Chain = chain
	roots := t.Roots
	if roots == nil {
		roots = w.Roots
	}
	r.Problems = w.inspect(chain, name, roots, r.Time)
	if leaf := chain[0]; r.Time.Before(leaf.NotAfter) && len(leaf.CRLDistributionPoints) > 0 {
		if err := w.revoked(ctx, &r); err != nil {
			r.Problems = append(r.Problems, err)
		}
	}
	if t.Managed {
		info := held(infos, name)
		switch {
		case info != nil:
			c := *info
			r.Held = &c
			err = compareHeld(chain[0], &c, name)
		case listErr != nil:
			err = fmt.Errorf("%w: the Manager's certificates could not be read: %w", ErrNotManagerCertificate, listErr)
		default:
			err = compareHeld(chain[0], nil, name)
		}
		if err != nil {
			r.Problems = append(r.Problems, err)
		}
	}
	return r
}

// revoked looks r's leaf up in the CRLs it names, with the served issuer
// (when it signed the leaf), and returns the ErrRevoked problem when they
// list it. A list that cannot be read is no problem of the served
// certificate: r.RevocationErr says so.
func (w *Watchdog) revoked(ctx context.Context, r *Result) error {
	leaf := r.Chain[0]
	var issuer *x509.Certificate
	if len(r.Chain) > 1 && leaf.CheckSignatureFrom(r.Chain[1]) == nil {
		issuer = r.Chain[1]
	}
	st, err := w.crl.Check(ctx, leaf, issuer)
	r.Revocation, r.RevocationErr = st, err
	if !st.Revoked {
		if err != nil {
			w.logger().Debug("watchdog: revocation unknown", "target", r.Target.String(), "err", err)
		}
		return nil
	}
	return fmt.Errorf("%w: at %s (reason %s; CRL %s)", ErrRevoked,
		st.RevokedAt.UTC().Format(time.RFC3339), revocation.ReasonText(st.Reason), st.CRL)
}

// handshake dials addr and runs a TLS handshake with SNI name (none for an
// IP address), and returns the chain served. It sends nothing but the
// handshake, and closes the connection right after it.
func (w *Watchdog) handshake(ctx context.Context, addr, name string, ip bool) ([]*x509.Certificate, time.Duration, error) {
	timeout := w.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dial := w.DialContext
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	start := time.Now()
	raw, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, time.Since(start), fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	defer raw.Close()
	conf := &tls.Config{
		// The chain is verified by inspect, against the configured roots,
		// so that an untrusted one is still seen and reported.
		InsecureSkipVerify: true,
	}
	if !ip {
		conf.ServerName = name
	}
	tc := tls.Client(raw, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, time.Since(start), fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	latency := time.Since(start)
	chain := tc.ConnectionState().PeerCertificates
	if len(chain) == 0 {
		return nil, latency, fmt.Errorf("%w: the server sent no certificate", ErrHandshake)
	}
	return chain, latency, nil
}

// report records results with the callbacks, the logger and the audit
// log; prev are the previous round's.
func (w *Watchdog) report(results, prev []Result) {
	log := w.logger()
	var failed map[targetKey]bool // the previous round's targets with problems
	if w.AuditLog != nil {
		for _, r := range prev {
			if !r.OK() {
				if failed == nil {
					failed = make(map[targetKey]bool)
				}
				failed[r.Target.key()] = true
			}
		}
	}
	for _, r := range results {
		if w.OnResult != nil {
			w.OnResult(r)
		}
		if w.AuditLog != nil && (!r.OK() || failed[r.Target.key()]) {
			w.AuditLog.Add(r.auditRecord())
		}
		if r.OK() {
			continue
		}
		log.Warn("watchdog: problem", "addr", r.Target.Addr, "server_name", r.Target.ServerName,
			"serial", r.Serial(), "err", r.Err())
		if w.OnProblem != nil {
			w.OnProblem(r)
		}
	}
}
