package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/solvers"
)

// relayPersistConfig is an upstream's read-only dns-persist-01: the
// operator publishes the records, the relay holds no DNS credentials.
type relayPersistConfig struct {
	// Resolvers are recursive DNS servers (host:port) for following
	// CNAMEs and finding the zone; empty means /etc/resolv.conf's.
	Resolvers []string `json:"resolvers,omitempty"`
	// NameserverPort is the port of the zones' authoritative nameservers
	// (53 when zero).
	NameserverPort int `json:"nameserver_port,omitempty"`
	// IssuerDomainName is the CA's issuer domain name the records name;
	// empty means any the CA offers (the first in the record asked for).
	IssuerDomainName string `json:"issuer_domain_name,omitempty"`
	// Wildcard asks for policy=wildcard in every record, so that the
	// record of a name serves its wildcard too.
	Wildcard bool `json:"wildcard,omitempty"`
}

func (p *relayPersistConfig) check(field string) error {
	if p == nil {
		return nil
	}
	for i, r := range p.Resolvers {
		if _, _, err := net.SplitHostPort(r); err != nil {
			return cfgErr(fmt.Sprintf("%s.resolvers[%d]", field, i), "%q: want host:port", clip(r, 64))
		}
	}
	if p.NameserverPort < 0 || p.NameserverPort > 65535 {
		return cfgErr(field+".nameserver_port", "%d is not a port", p.NameserverPort)
	}
	if p.IssuerDomainName != "" {
		if n, err := autotls.NormalizeName(p.IssuerDomainName); err != nil || n != p.IssuerDomainName {
			return cfgErr(field+".issuer_domain_name", "%q is not a lower-case domain name such as letsencrypt.org", clip(p.IssuerDomainName, 64))
		}
	}
	return nil
}

// relayPersist is an upstream's read-only dns-persist-01 solver. Present
// checks the record of each name at every authoritative nameserver of its
// zone; a missing one is logged and remembered rather than failed at once,
// so that every name of the order is checked, and Wait — which runs once
// every challenge of the order is presented, before any is accepted at
// the CA — fails with the records missing for the whole order. Nothing is
// ever written to DNS.
type relayPersist struct {
	upstream string
	solver   *solvers.DNSPersist01
	logger   *slog.Logger

	mu      sync.Mutex
	pending map[string]persistMiss // by challenge URL
}

// persistMiss is a record found missing by Present.
type persistMiss struct {
	ctx context.Context // Present's: the same for every challenge of one order
	err *solvers.PersistRecordError
}

var (
	_ acme.Solver = (*relayPersist)(nil)
	_ acme.Waiter = (*relayPersist)(nil)
)

func newRelayPersist(upstream string, p *relayPersistConfig, logger *slog.Logger) *relayPersist {
	return &relayPersist{
		upstream: upstream,
		solver: &solvers.DNSPersist01{
			Resolvers: p.Resolvers, NameserverPort: p.NameserverPort,
			IssuerDomainName: p.IssuerDomainName, Wildcard: p.Wildcard, Logger: logger,
		},
		logger:  logger,
		pending: map[string]persistMiss{},
	}
}

// Present implements acme.Solver.
func (r *relayPersist) Present(ctx context.Context, ch acme.Challenge) error {
	err := r.solver.Present(ctx, ch)
	var pe *solvers.PersistRecordError
	if err == nil || !errors.As(err, &pe) {
		return err
	}
	r.logger.WarnContext(ctx, "tlsmint relay: a dns-persist-01 record is missing upstream: publish it (once; it stays for every later order)",
		"upstream", r.upstream, "name", ch.Identifier.Value, "record", pe.Name+". IN TXT "+pe.Record.ZoneFileValue(), "reason", pe.Reason)
	r.mu.Lock()
	r.pending[ch.URL] = persistMiss{ctx: ctx, err: pe}
	r.mu.Unlock()
	return nil
}

// Wait implements acme.Waiter: it fails, before the CA is asked to
// validate anything, when a record of the order is missing.
func (r *relayPersist) Wait(ctx context.Context, ch acme.Challenge) error {
	r.mu.Lock()
	miss, ok := r.pending[ch.URL]
	var missing []*solvers.PersistRecordError
	if ok {
		for _, m := range r.pending {
			if sameContext(m.ctx, miss.ctx) {
				missing = append(missing, m.err)
			}
		}
	}
	r.mu.Unlock()
	if !ok {
		return r.solver.Wait(ctx, ch)
	}
	slices.SortFunc(missing, func(a, b *solvers.PersistRecordError) int { return strings.Compare(a.Name, b.Name) })
	errs := make([]error, len(missing))
	for i, m := range missing {
		errs[i] = m
	}
	return fmt.Errorf("%d dns-persist-01 record(s) missing: %w", len(errs), errors.Join(errs...))
}

// CleanUp implements acme.Solver; it deletes nothing from DNS.
func (r *relayPersist) CleanUp(ctx context.Context, ch acme.Challenge) error {
	r.mu.Lock()
	delete(r.pending, ch.URL)
	r.mu.Unlock()
	return r.solver.CleanUp(ctx, ch)
}

// sameContext reports whether a and b are the same context, without
// panicking on a context type that is not comparable.
func sameContext(a, b context.Context) bool {
	ta, tb := reflect.TypeOf(a), reflect.TypeOf(b)
	return ta == tb && ta != nil && ta.Comparable() && a == b
}
