package solvers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libdns/libdns"
	"github.com/tlsmint/tlsmint/acme"
)

// Defaults of [DNSPersist01].
const (
	// DefaultPersistTTL is the TTL of the records DNSPersist01 creates.
	// A CA reuses a dns-persist-01 validation for at most the record's
	// TTL, so a long one saves validations.
	DefaultPersistTTL = time.Hour
	// DefaultPersistUntilWarning is how long before a record's
	// persistUntil DNSPersist01 starts warning that it ends.
	DefaultPersistUntilWarning = 30 * 24 * time.Hour
)

// persistMargin is how long before its persistUntil a record is taken as
// ended: the CA validates a moment after the check.
const persistMargin = time.Minute

// ErrPersistRecordMissing is matched (errors.Is) by the
// [*PersistRecordError] that [DNSPersist01] returns, in read-only mode,
// when the authoritative nameservers do not all answer a record that
// covers the challenge.
var ErrPersistRecordMissing = errors.New("solvers: dns-persist-01 record missing")

// ErrPersistUntilPassed is returned (wrapped) when DNSPersist01.PersistUntil
// has passed, and matched by a [*PersistRecordError] whose record's
// persistUntil has passed: the CA would refuse the record.
var ErrPersistUntilPassed = errors.New("solvers: dns-persist-01 persistUntil has passed")

// ErrIssuerNotOffered is returned (wrapped) when DNSPersist01's
// IssuerDomainName is not among the challenge's issuer domain names.
var ErrIssuerNotOffered = errors.New("solvers: dns-persist-01 issuer domain name not offered by the CA")

// A PersistRecordError says which dns-persist-01 record to create — the
// instruction an operator copies into a DNS console — and why what is
// published does not do. It matches [ErrPersistRecordMissing], and
// [ErrPersistUntilPassed] when the record found has ended.
type PersistRecordError struct {
	// Name is where the record must be (fully qualified, without the
	// trailing dot): _validation-persist.<name>, or the end of the CNAME
	// chain that starts there.
	Name string
	// Record is the record to create; Record.String() its TXT value.
	Record PersistRecord
	// Reason is what the authoritative nameservers answer instead.
	Reason string
	// Ended is the persistUntil of a record of this account that has
	// passed, if that is the reason; zero otherwise.
	Ended time.Time
}

// Error says which TXT record to create, in zone file syntax, and why.
func (e *PersistRecordError) Error() string {
	return fmt.Sprintf("solvers: dns-persist-01: create the TXT record %s. IN TXT %s (%s)", e.Name, e.Record.ZoneFileValue(), e.Reason)
}

// Is matches ErrPersistRecordMissing, and ErrPersistUntilPassed when the
// record found has ended.
func (e *PersistRecordError) Is(target error) bool {
	return target == ErrPersistRecordMissing || target == ErrPersistUntilPassed && !e.Ended.IsZero()
}

// DNSPersist01 answers dns-persist-01 challenges (draft-ietf-acme-dns-persist):
// the CA validates a long-lived TXT record at _validation-persist.<name>
// that names the CA (one of its issuer domain names) and the account.
// Once the record exists, every later validation and renewal needs no DNS
// change at all.
//
// It works in one of two modes:
//
//   - With a Provider, Present creates the record once: when the
//     authoritative nameservers already answer a record that covers the
//     challenge, nothing is written; else the record is appended (and
//     records of this account for the same CA that no longer do, such as
//     one whose persistUntil passed, are deleted afterwards), and Wait
//     waits until every authoritative nameserver answers it. CleanUp never
//     deletes anything: the record is meant to stay.
//   - Without a Provider (read-only: no DNS credentials anywhere), Present
//     only checks, at every authoritative nameserver of the zone, and when
//     the record is missing or does not cover the challenge it fails —
//     before the challenge is accepted at the CA — with a
//     [*PersistRecordError] that states the exact record to create.
//
// A CNAME at _validation-persist.<name> is followed: the record is looked
// up, and created, at its target. A record covers a challenge when it names
// one of the challenge's issuer domain names (IssuerDomainName, when set)
// and its account URI exactly, carries policy=wildcard for a wildcard
// name, and its persistUntil, if any, has not passed; records of other CAs
// and other accounts are left alone.
//
// Fields must not change after first use; a DNSPersist01 must not be copied
// after first use. It is safe for concurrent use.
type DNSPersist01 struct {
	// Provider creates the record. Nil means read-only: the record must
	// be created by the operator, and Present fails with the record to
	// create until it is there.
	Provider DNSProvider

	// IssuerDomainName is the CA's issuer domain name the record names;
	// it must be among those the challenge offers (else Present fails
	// with ErrIssuerNotOffered). Empty means the first the challenge
	// offers, and in read-only mode a record naming any of them is
	// accepted.
	IssuerDomainName string

	// Wildcard puts policy=wildcard in every record, so that the record of
	// a name also validates *.name and every subdomain of it. False puts
	// it only in the records that wildcard names need (which then also
	// validate the name). Set it when both a name and its wildcard are
	// managed, so that one record serves both from the start.
	Wildcard bool

	// PersistUntil, if not zero, is put in the records as persistUntil:
	// the CA no longer accepts them for a validation after it. Present
	// fails with ErrPersistUntilPassed once it has passed. Zero means none.
	PersistUntil time.Time

	// PersistUntilWarning is how long before a record's persistUntil
	// Present logs a warning at each validation. Zero means
	// DefaultPersistUntilWarning.
	PersistUntilWarning time.Duration

	// Resolvers are the recursive DNS servers ("host:port") used to follow
	// CNAMEs and find the zone and its nameservers. Empty means the
	// servers of /etc/resolv.conf.
	Resolvers []string

	// NameserverPort is the port the zone's authoritative nameservers are
	// asked on. Zero means 53; tests set the port of a mock server.
	NameserverPort int

	// PropagationTimeout bounds Wait after a record was created. Zero
	// means DefaultPropagationTimeout; a negative value skips the wait.
	PropagationTimeout time.Duration

	// PollInterval is the time between two rounds of queries in Wait.
	// Zero means DefaultPollInterval.
	PollInterval time.Duration

	// TTL is the TTL of the records created. Zero means
	// DefaultPersistTTL.
	TTL time.Duration

	// Now is the clock that persistUntil is compared with. Nil means
	// time.Now.
	Now func() time.Time

	// Logger receives a record per record created or replaced, and the
	// warnings about persistUntil. Nil means silent.
	Logger *slog.Logger

	mu      sync.Mutex
	created map[string]*persistCreated // by challenge key, for Wait
	// appended holds name+value of the records appended whose Wait has
	// not ended, so that one not yet visible is not appended twice.
	appended map[string]bool
}

// persistCreated is a record Present appended (or found appended by
// another challenge and not yet visible), to wait for.
type persistCreated struct {
	rec       *dnsRecord
	appendKey string // set for the challenge that appended it
}

var (
	_ acme.Solver = (*DNSPersist01)(nil)
	_ acme.Waiter = (*DNSPersist01)(nil)
)

func (d *DNSPersist01) logger() *slog.Logger {
	if d.Logger != nil {
		return d.Logger
	}
	return discardLogger
}

func (d *DNSPersist01) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func (d *DNSPersist01) querier() (querier, error) {
	if len(d.Resolvers) > 0 {
		return querier{servers: d.Resolvers}, nil
	}
	servers, err := systemResolvers()
	if err != nil {
		return querier{}, err
	}
	return querier{servers: servers}, nil
}

func (d *DNSPersist01) port() int {
	if d.NameserverPort != 0 {
		return d.NameserverPort
	}
	return 53
}

// ReadOnly reports whether d only checks records (it has no Provider).
func (d *DNSPersist01) ReadOnly() bool { return d.Provider == nil }

// RecordFor returns the record d wants for a name at the CA with the given
// issuer domain name, for the account: policy=wildcard when wildcard is
// set (the name is a wildcard, or shares its record with one) or
// d.Wildcard is, and d.PersistUntil.
func (d *DNSPersist01) RecordFor(issuerDomainName, accountURI string, wildcard bool) PersistRecord {
	r := PersistRecord{IssuerDomainName: issuerDomainName, AccountURI: accountURI, Wildcard: wildcard || d.Wildcard}
	if !d.PersistUntil.IsZero() {
		r.PersistUntil = time.Unix(d.PersistUntil.Unix(), 0).UTC()
	}
	return r
}

// EndsSoon reports whether r's persistUntil falls within the warning
// period (PersistUntilWarning) from now.
func (d *DNSPersist01) EndsSoon(r PersistRecord) bool {
	w := d.PersistUntilWarning
	if w <= 0 {
		w = DefaultPersistUntilWarning
	}
	return !r.PersistUntil.IsZero() && r.PersistUntil.Before(d.now().Add(w))
}

// checkPersistUntil fails once d.PersistUntil has passed.
func (d *DNSPersist01) checkPersistUntil() error {
	if !d.PersistUntil.IsZero() && !d.now().Add(persistMargin).Before(d.PersistUntil) {
		return fmt.Errorf("%w: PersistUntil is %s: set a later one, or none", ErrPersistUntilPassed, d.PersistUntil.UTC().Format(time.RFC3339))
	}
	return nil
}

// Present implements [acme.Solver]. With a Provider, it creates the record
// unless one that covers the challenge is published; without one, it
// fails with a [*PersistRecordError] unless one is. Errors from the
// provider and from DNS look-ups are returned wrapped.
func (d *DNSPersist01) Present(ctx context.Context, chal acme.Challenge) error {
	if err := chal.CheckDNSPersist01(); err != nil {
		return fmt.Errorf("solvers: dns-persist-01: %w", err)
	}
	base, err := persistBase(chal.Identifier)
	if err != nil {
		return err
	}
	issuers := chal.IssuerDomainNames
	if d.IssuerDomainName != "" {
		if !slices.Contains(issuers, d.IssuerDomainName) {
			return fmt.Errorf("%w: IssuerDomainName is %q; the CA offers %q", ErrIssuerNotOffered, d.IssuerDomainName, issuers)
		}
		issuers = []string{d.IssuerDomainName}
	}
	if err := d.checkPersistUntil(); err != nil {
		return err
	}
	want := d.RecordFor(issuers[0], chal.AccountURI, chal.Wildcard)
	q, err := d.querier()
	if err != nil {
		return fmt.Errorf("solvers: dns-persist-01: %w", err)
	}
	lk, err := d.lookup(ctx, q, base, issuers, want)
	if err != nil {
		return err
	}
	if lk.match != nil && (d.Provider == nil || want.PersistUntil.IsZero() || lk.match.PersistUntil.Equal(want.PersistUntil)) {
		d.warnEnding(ctx, lk.fqdn, *lk.match)
		return nil
	}
	if d.Provider == nil {
		return lk.missing(want)
	}
	return d.create(ctx, chal, lk, want)
}

// create appends want through the provider, then deletes the records of
// this account for the CA that it replaces.
func (d *DNSPersist01) create(ctx context.Context, chal acme.Challenge, lk *persistLookup, want PersistRecord) error {
	for _, old := range lk.ours {
		want.Wildcard = want.Wildcard || old.rec.Wildcard // never narrow what was granted
	}
	ttl := d.TTL
	if ttl <= 0 {
		ttl = DefaultPersistTTL
	}
	rel := libdns.RelativeName(lk.fqdn, lk.zone)
	value := want.String()
	// A record this solver appended, or one some nameservers answer
	// already, is only waited for: appending it again would publish it
	// twice.
	appendKey := lk.fqdn + "\x00" + value
	d.mu.Lock()
	pending := d.appended[appendKey]
	if !pending {
		if d.appended == nil {
			d.appended = make(map[string]bool)
		}
		d.appended[appendKey] = true
	}
	d.mu.Unlock()
	owner := ""
	switch {
	case pending:
		d.logger().InfoContext(ctx, "solvers: dns-persist-01 record appended already, not yet at every nameserver", "zone", lk.zone, "name", lk.fqdn)
	case slices.ContainsFunc(lk.ours, func(o foundRecord) bool { return o.raw == value }):
		d.mu.Lock()
		delete(d.appended, appendKey) // published already: nothing to append
		d.mu.Unlock()
		d.logger().InfoContext(ctx, "solvers: dns-persist-01 record published, not yet at every nameserver", "zone", lk.zone, "name", lk.fqdn, "reason", lk.reason)
	default:
		if _, err := d.Provider.AppendRecords(ctx, lk.zone, []libdns.Record{libdns.TXT{Name: rel, TTL: ttl, Text: value}}); err != nil {
			d.mu.Lock()
			delete(d.appended, appendKey)
			d.mu.Unlock()
			return fmt.Errorf("solvers: dns-persist-01: appending TXT %s in zone %s: %w", rel, lk.zone, err)
		}
		owner = appendKey
		d.logger().InfoContext(ctx, "solvers: dns-persist-01 record created", "zone", lk.zone, "name", lk.fqdn, "value", value)
	}
	var stale []libdns.Record
	for _, old := range lk.ours {
		if old.raw != value {
			stale = append(stale, libdns.TXT{Name: rel, Text: old.raw})
		}
	}
	if len(stale) > 0 {
		if _, err := d.Provider.DeleteRecords(ctx, lk.zone, stale); err != nil {
			// The new record is there; the old ones only clutter.
			d.logger().WarnContext(ctx, "solvers: dns-persist-01 replaced records not deleted", "zone", lk.zone, "name", lk.fqdn, "err", err)
		} else {
			d.logger().InfoContext(ctx, "solvers: dns-persist-01 replaced records deleted", "zone", lk.zone, "name", lk.fqdn, "count", len(stale))
		}
	}
	key := challengeKey(chal)
	d.mu.Lock()
	if d.created == nil {
		d.created = make(map[string]*persistCreated)
	}
	d.created[key] = &persistCreated{rec: &dnsRecord{typ: acme.ChallengeDNSPersist01, zone: lk.zone, fqdn: lk.fqdn, value: value}, appendKey: owner}
	d.mu.Unlock()
	return nil
}

// release ends the wait for a record this challenge appended.
func (d *DNSPersist01) release(c *persistCreated) {
	if c == nil || c.appendKey == "" {
		return
	}
	d.mu.Lock()
	delete(d.appended, c.appendKey)
	d.mu.Unlock()
}

// Wait implements [acme.Waiter]: after Present created a record, it polls
// the zone's authoritative nameservers until every one answers it, or
// fails with an error wrapping [ErrNotPropagated] after the propagation
// timeout. When Present created nothing, it returns at once.
func (d *DNSPersist01) Wait(ctx context.Context, chal acme.Challenge) error {
	d.mu.Lock()
	c := d.created[challengeKey(chal)]
	d.mu.Unlock()
	if c == nil {
		return nil
	}
	defer d.release(c)
	q, err := d.querier()
	if err != nil {
		return fmt.Errorf("solvers: dns-persist-01: %w", err)
	}
	return waitVisible(ctx, q, acme.ChallengeDNSPersist01, d.port(), c.rec, d.PropagationTimeout, d.PollInterval)
}

// CleanUp implements [acme.Solver]. It deletes nothing: the record is
// meant to stay for every later validation.
func (d *DNSPersist01) CleanUp(_ context.Context, chal acme.Challenge) error {
	key := challengeKey(chal)
	d.mu.Lock()
	c := d.created[key]
	delete(d.created, key)
	d.mu.Unlock()
	d.release(c)
	return nil
}

// Check looks up the dns-persist-01 record of name (a DNS name; for
// "*.example.com", the record of example.com with policy=wildcard) at
// every authoritative nameserver of its zone, following a CNAME, and
// returns the record published there that covers want (see
// [DNSPersist01.RecordFor]). When there is none it returns a
// [*PersistRecordError] naming want as the record to create. It makes no
// change and no request to the CA.
func (d *DNSPersist01) Check(ctx context.Context, name string, want PersistRecord) (PersistRecord, error) {
	id := acme.Identifier{Type: acme.IdentifierDNS, Value: name}
	if b, ok := strings.CutPrefix(name, "*."); ok {
		id.Value, want.Wildcard = b, true
	}
	base, err := persistBase(id)
	if err != nil {
		return PersistRecord{}, err
	}
	q, err := d.querier()
	if err != nil {
		return PersistRecord{}, fmt.Errorf("solvers: dns-persist-01: %w", err)
	}
	lk, err := d.lookup(ctx, q, base, []string{want.IssuerDomainName}, want)
	if err != nil {
		return PersistRecord{}, err
	}
	if lk.match == nil {
		return PersistRecord{}, lk.missing(want)
	}
	return *lk.match, nil
}

// warnEnding logs a warning when r's persistUntil is near.
func (d *DNSPersist01) warnEnding(ctx context.Context, fqdn string, r PersistRecord) {
	if d.EndsSoon(r) {
		d.logger().WarnContext(ctx, "solvers: dns-persist-01 record's persistUntil is near: publish one with a later persistUntil, or none, before then",
			"name", strings.TrimSuffix(fqdn, "."), "persist_until", r.PersistUntil)
	}
}

// persistBase returns the normalised DNS name whose record validates id.
func persistBase(id acme.Identifier) (string, error) {
	id.Value = strings.TrimPrefix(id.Value, "*.")
	if id.Type != acme.IdentifierDNS {
		return "", fmt.Errorf("%w: dns-persist-01 proves DNS names only, not %q", ErrInvalidIdentifier, truncate(id.Type))
	}
	return normalizeIdentifier(id)
}

// persistLookup is what the authoritative nameservers answer at a
// name's dns-persist-01 record.
type persistLookup struct {
	fqdn, zone string // canonical, with the trailing dot
	// match is a record that covers the challenge at every server.
	match *PersistRecord
	// ours are the records (at the first server) of this account for
	// one of the CA's issuer domain names.
	ours []foundRecord
	// reason says why there is no match.
	reason string
	// ended is the persistUntil of a record of this account that has
	// passed, if one was found.
	ended time.Time
}

type foundRecord struct {
	raw string
	rec PersistRecord
}

// missing returns the error that says what to create instead.
func (lk *persistLookup) missing(want PersistRecord) *PersistRecordError {
	return &PersistRecordError{Name: strings.TrimSuffix(lk.fqdn, "."), Record: want, Reason: lk.reason, Ended: lk.ended}
}

// lookup asks every authoritative nameserver of the zone of base's record
// for it. A record covers want when it names one of issuers and covers
// want otherwise (see PersistRecord.covers) at now plus a margin.
func (d *DNSPersist01) lookup(ctx context.Context, q querier, base string, issuers []string, want PersistRecord) (*persistLookup, error) {
	name := PersistRecordLabel + "." + base
	fqdn, err := q.followCNAME(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("solvers: dns-persist-01: following CNAME at %s: %w", name, err)
	}
	zone, err := q.findZone(ctx, fqdn)
	if err != nil {
		return nil, fmt.Errorf("solvers: dns-persist-01: %w", err)
	}
	servers, err := q.nameservers(ctx, zone, d.port())
	if err != nil {
		return nil, fmt.Errorf("solvers: dns-persist-01: %w", err)
	}
	at := d.now().Add(persistMargin)
	lk := &persistLookup{fqdn: fqdn, zone: zone}
	for i, srv := range servers {
		values, err := q.txt(ctx, srv, fqdn)
		if err != nil {
			return nil, fmt.Errorf("solvers: dns-persist-01: looking up %s: %w", strings.TrimSuffix(fqdn, "."), err)
		}
		var found *PersistRecord
		var reasons []string
		others := 0
		for _, v := range values {
			r, err := ParsePersistRecord(v)
			if err != nil {
				issuer, _, _ := strings.Cut(v, ";")
				if slices.Contains(issuers, trimWSP(issuer)) {
					reasons = append(reasons, fmt.Sprintf("a record for this CA does not parse: %v", err))
				} else {
					others++
				}
				continue
			}
			if !slices.Contains(issuers, r.IssuerDomainName) {
				others++
				continue
			}
			w := want
			w.IssuerDomainName = r.IssuerDomainName
			why := r.covers(w, at)
			if i == 0 && r.AccountURI == want.AccountURI {
				lk.ours = append(lk.ours, foundRecord{raw: v, rec: r})
			}
			if why == "" {
				if found == nil {
					found = &r
				}
				continue
			}
			if r.AccountURI == want.AccountURI && !r.PersistUntil.IsZero() && !at.Before(r.PersistUntil) {
				lk.ended = r.PersistUntil
			}
			reasons = append(reasons, fmt.Sprintf("a record for this CA does not do: %s", why))
		}
		if found == nil {
			switch {
			case len(reasons) > 0:
			case others > 0:
				reasons = append(reasons, fmt.Sprintf("no record names this CA (%d for others)", others))
			default:
				reasons = append(reasons, "no TXT record there")
			}
			lk.match = nil
			lk.reason = fmt.Sprintf("nameserver %s: %s", srv, strings.Join(reasons, "; "))
			return lk, nil
		}
		if i == 0 {
			lk.match = found
		}
	}
	return lk, nil
}
