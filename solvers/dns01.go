package solvers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/libdns/libdns"
	"github.com/tlsmint/tlsmint/acme"
)

// Defaults of [DNS01].
const (
	DefaultPropagationTimeout = 2 * time.Minute
	DefaultPollInterval       = 2 * time.Second
	DefaultTXTTTL             = time.Minute
)

// ErrNotPropagated is returned (wrapped) by [DNS01.Wait] and
// [DNSPersist01.Wait] when the TXT record is not visible at every
// authoritative nameserver of its zone before the propagation timeout. The
// challenge is then never submitted to the CA.
var ErrNotPropagated = errors.New("solvers: DNS record not propagated")

// DNSProvider is what [DNS01] needs of a DNS provider: the libdns
// interfaces that add and delete records. Hundreds of provider modules
// (github.com/libdns/…) implement both.
type DNSProvider interface {
	libdns.RecordAppender
	libdns.RecordDeleter
}

// DNS01 answers dns-01 challenges (RFC 8555, section 8.4) by publishing a
// TXT record at _acme-challenge.<name> through a libdns provider, and
// dns-account-01 challenges (draft-ietf-acme-dns-account-label) by
// publishing the same value at _<label>._acme-challenge.<name>, where the
// label is derived from the account URL ([acme.DNSAccountLabel]): give it
// to Obtain under both types. Clients of different accounts using
// dns-account-01 never touch each other's records, nor a dns-01 client's.
//
// Present follows a CNAME at the record's name (so the record can live
// in a delegated zone), finds the zone by SOA look-up, and appends the TXT
// record. Wait asks the zone's authoritative nameservers (found by NS
// look-up) until every one of them answers with the exact value, or fails
// with [ErrNotPropagated]. CleanUp deletes exactly the records of the
// challenge's value that the provider's AppendRecords returned (the record
// asked for when it returned none with that value), so an order for
// example.com and *.example.com, which needs two values at one name at
// once, removes each value only once its own challenge is done.
//
// Only Provider is required. Fields must not change after first use; a DNS01
// must not be copied after first use. It is safe for concurrent use.
type DNS01 struct {
	// Provider adds and deletes the TXT records. Required.
	Provider DNSProvider

	// Resolvers are the recursive DNS servers ("host:port") used to follow
	// CNAMEs and find zones and their nameservers. Empty means the servers
	// of /etc/resolv.conf.
	Resolvers []string

	// NameserverPort is the port the zone's authoritative nameservers are
	// asked on. Zero means 53; tests set the port of a mock server.
	NameserverPort int

	// PropagationTimeout bounds Wait. Zero means DefaultPropagationTimeout;
	// a negative value skips the propagation check altogether.
	PropagationTimeout time.Duration

	// PollInterval is the time between two rounds of queries in Wait. Zero
	// means DefaultPollInterval.
	PollInterval time.Duration

	// TTL is the TTL of the TXT records. Zero means DefaultTXTTTL.
	TTL time.Duration

	// CleanupTimeout bounds CleanUp, which runs detached from its caller's
	// cancellation. Zero means DefaultCleanupTimeout.
	CleanupTimeout time.Duration

	// Logger receives a record per appended and deleted record, and the
	// failures of CleanUp. Nil means silent.
	Logger *slog.Logger

	mu      sync.Mutex
	records map[string]*dnsRecord // by challenge key
}

// dnsRecord is what Present did for one challenge.
type dnsRecord struct {
	typ     string          // challenge type
	zone    string          // canonical, trailing dot
	fqdn    string          // canonical name the record is at
	value   string          // TXT value
	created []libdns.Record // as AppendRecords returned them
}

var (
	_ acme.Solver = (*DNS01)(nil)
	_ acme.Waiter = (*DNS01)(nil)
)

func (d *DNS01) logger() *slog.Logger {
	if d.Logger != nil {
		return d.Logger
	}
	return discardLogger
}

func (d *DNS01) querier() (querier, error) {
	if len(d.Resolvers) > 0 {
		return querier{servers: d.Resolvers}, nil
	}
	servers, err := systemResolvers()
	if err != nil {
		return querier{}, err
	}
	return querier{servers: servers}, nil
}

// challengeKey identifies one challenge among those presented at once.
func challengeKey(chal acme.Challenge) string {
	if chal.URL != "" {
		return chal.URL
	}
	return chal.Token + " " + chal.Identifier.Value
}

// Present implements [acme.Solver]: it appends the TXT record of a dns-01
// or dns-account-01 challenge through the provider. An error from the
// provider is returned wrapped.
func (d *DNS01) Present(ctx context.Context, chal acme.Challenge) error {
	typ := chal.Type
	if typ != acme.ChallengeDNSAccount01 {
		typ = acme.ChallengeDNS01 // checkChallenge refuses any other
	}
	if err := checkChallenge(chal, typ); err != nil {
		return err
	}
	if d.Provider == nil {
		return fmt.Errorf("solvers: %s: no Provider", typ)
	}
	id := chal.Identifier
	id.Value = strings.TrimPrefix(id.Value, "*.")
	if id.Type != acme.IdentifierDNS {
		return fmt.Errorf("%w: %s proves DNS names only, not %q", ErrInvalidIdentifier, typ, id.Type)
	}
	if _, err := normalizeIdentifier(id); err != nil {
		return err
	}
	name := chal.DNS01TXTRecordName()
	if typ == acme.ChallengeDNSAccount01 {
		if chal.AccountURI == "" {
			return fmt.Errorf("solvers: %s: challenge has no account URI", typ)
		}
		name = chal.DNSAccount01TXTRecordName()
	}
	q, err := d.querier()
	if err != nil {
		return fmt.Errorf("solvers: %s: %w", typ, err)
	}
	fqdn, err := q.followCNAME(ctx, name)
	if err != nil {
		return fmt.Errorf("solvers: %s: following CNAME at %s: %w", typ, name, err)
	}
	zone, err := q.findZone(ctx, fqdn)
	if err != nil {
		return fmt.Errorf("solvers: %s: %w", typ, err)
	}
	ttl := d.TTL
	if ttl <= 0 {
		ttl = DefaultTXTTTL
	}
	rec := &dnsRecord{typ: typ, zone: zone, fqdn: fqdn, value: chal.DNS01TXTValue()}
	want := libdns.TXT{Name: libdns.RelativeName(fqdn, zone), TTL: ttl, Text: rec.value}

	key := challengeKey(chal)
	d.mu.Lock()
	if d.records == nil {
		d.records = make(map[string]*dnsRecord)
	}
	if _, dup := d.records[key]; dup {
		d.mu.Unlock()
		return fmt.Errorf("solvers: %s: challenge %s already presented", typ, key)
	}
	d.records[key] = rec // reserved; created is filled in below
	d.mu.Unlock()

	created, err := d.Provider.AppendRecords(ctx, zone, []libdns.Record{want})
	if err != nil {
		d.mu.Lock()
		delete(d.records, key)
		d.mu.Unlock()
		return fmt.Errorf("solvers: %s: appending TXT %s in zone %s: %w", typ, want.Name, zone, err)
	}
	created = ownRecords(created, want, zone, fqdn)
	d.mu.Lock()
	rec.created = created
	d.mu.Unlock()
	d.logger().InfoContext(ctx, "solvers: "+typ+" record appended", "zone", zone, "name", fqdn, "identifier", chal.Identifier.Value)
	return nil
}

// ownRecords returns the records of created, as AppendRecords returned
// them, that are exactly the TXT value want at fqdn, or want itself if
// there are none (a provider that reports nothing). DeleteRecords deletes
// every record that matches the fields given, so a record returned without
// its value (or its type) would have CleanUp delete every TXT record at the
// name, another challenge's value included.
func ownRecords(created []libdns.Record, want libdns.TXT, zone, fqdn string) []libdns.Record {
	var own []libdns.Record
	for _, r := range created {
		rr := r.RR()
		if rr.Type == "TXT" && rr.Data == want.Text && rr.Name != "" && strings.EqualFold(canonical(libdns.AbsoluteName(rr.Name, zone)), fqdn) {
			own = append(own, r)
		}
	}
	if len(own) == 0 {
		return []libdns.Record{want}
	}
	return own
}

// Wait implements [acme.Waiter]: it polls the zone's authoritative
// nameservers until every one answers with the record's exact value. It
// fails with an error wrapping [ErrNotPropagated] after the propagation
// timeout, or with ctx's error.
func (d *DNS01) Wait(ctx context.Context, chal acme.Challenge) error {
	if d.PropagationTimeout < 0 {
		return nil
	}
	d.mu.Lock()
	rec := d.records[challengeKey(chal)]
	d.mu.Unlock()
	if rec == nil {
		return fmt.Errorf("solvers: %s: challenge for %s was not presented", chal.Type, chal.Identifier.Value)
	}
	q, err := d.querier()
	if err != nil {
		return fmt.Errorf("solvers: %s: %w", rec.typ, err)
	}
	return waitVisible(ctx, q, rec.typ, d.NameserverPort, rec, d.PropagationTimeout, d.PollInterval)
}

// waitVisible polls the authoritative nameservers of rec's zone (on port,
// 53 when zero) every interval until every one answers rec's value at its
// name, for at most timeout (DefaultPropagationTimeout when zero; no wait
// when negative). typ names the challenge type in errors.
func waitVisible(ctx context.Context, q querier, typ string, port int, rec *dnsRecord, timeout, interval time.Duration) error {
	if timeout < 0 {
		return nil
	}
	if timeout == 0 {
		timeout = DefaultPropagationTimeout
	}
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	if port == 0 {
		port = 53
	}
	deadline := time.Now().Add(timeout)
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var servers []string
	var lastErr error
	for {
		if servers == nil {
			servers, lastErr = q.nameservers(wctx, rec.zone, port)
		}
		if servers != nil {
			missing, err := missingAt(wctx, q, servers, rec)
			if err == nil && len(missing) == 0 {
				return nil
			}
			lastErr = err
			if err == nil {
				lastErr = fmt.Errorf("not yet at %s", strings.Join(missing, ", "))
			}
		}
		t := time.NewTimer(interval)
		select {
		case <-t.C:
		case <-wctx.Done():
			t.Stop()
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("solvers: %s: waiting for %s: %w", typ, rec.fqdn, err)
			}
			return fmt.Errorf("%w: %s: TXT %s = %q after %v: %v", ErrNotPropagated, typ, rec.fqdn, rec.value, timeout, lastErr)
		}
	}
}

// missingAt returns the servers that do not yet answer the record.
func missingAt(ctx context.Context, q querier, servers []string, rec *dnsRecord) ([]string, error) {
	var missing []string
	for _, srv := range servers {
		ok, err := q.hasTXT(ctx, srv, rec.fqdn, rec.value)
		if err != nil {
			return nil, err
		}
		if !ok {
			missing = append(missing, srv)
		}
	}
	return missing, nil
}

// CleanUp implements [acme.Solver]: it deletes exactly the records that
// Present appended for this challenge, under a context detached from ctx's
// cancellation and bounded by CleanupTimeout. A provider error is logged and
// returned wrapped; the records are then forgotten, not retried.
func (d *DNS01) CleanUp(ctx context.Context, chal acme.Challenge) error {
	key := challengeKey(chal)
	d.mu.Lock()
	rec := d.records[key]
	delete(d.records, key)
	d.mu.Unlock()
	if rec == nil || len(rec.created) == 0 {
		return nil
	}
	ctx, cancel := cleanupContext(ctx, d.CleanupTimeout)
	defer cancel()
	if _, err := d.Provider.DeleteRecords(ctx, rec.zone, rec.created); err != nil {
		d.logger().WarnContext(ctx, "solvers: "+rec.typ+" record not deleted", "zone", rec.zone, "name", rec.fqdn, "err", err)
		return fmt.Errorf("solvers: %s: deleting TXT %s in zone %s: %w", rec.typ, rec.fqdn, rec.zone, err)
	}
	d.logger().InfoContext(ctx, "solvers: "+rec.typ+" record deleted", "zone", rec.zone, "name", rec.fqdn)
	return nil
}
