package autotls

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/solvers"
)

// DefaultDNSRecordCheckInterval is how often, by default, a Manager looks
// up a dns-persist-01 record it is waiting for (see
// [Manager.DNSRecordCheckInterval]).
const DefaultDNSRecordCheckInterval = 30 * time.Second

// dnsPersistKey identifies a name's record at one issuer.
type dnsPersistKey struct{ name, issuer string }

// dnsPersistNeed is a record a name waits for, or one that ends soon.
type dnsPersistNeed struct {
	want   solvers.PersistRecord // what Check looks for
	record record.DNS
	ending bool // the record is published but ends soon
}

// dnsPersistState is the Manager's state of read-only dns-persist-01.
type dnsPersistState struct {
	mu       sync.Mutex
	needs    map[dnsPersistKey]*dnsPersistNeed
	learned  map[string]string // issuer URL -> issuer domain name its challenges offer
	watching bool
}

// dnsPersistReadOnly returns the Manager's dns-persist-01 solver when it is
// read-only.
func (m *Manager) dnsPersistReadOnly() *solvers.DNSPersist01 {
	if d := m.DNSPersist01; d != nil && d.ReadOnly() {
		return d
	}
	return nil
}

func (m *Manager) dnsRecordCheckInterval() time.Duration {
	if m.DNSRecordCheckInterval > 0 {
		return m.DNSRecordCheckInterval
	}
	return DefaultDNSRecordCheckInterval
}

// dnsPersistWildcard reports whether name's dns-persist-01 record must
// carry policy=wildcard: name is a wildcard, or its wildcard is managed
// too, so that one record serves both.
func (m *Manager) dnsPersistWildcard(name string) bool {
	return strings.HasPrefix(name, "*.") || m.st.managed.has("*."+name)
}

// dnsPersistIssuerName returns the issuer domain name the record for iss
// names: DNSPersist01.IssuerDomainName; else the one iss's challenges
// offered; else the CA's first CAA identity (its directory's
// meta.caaIdentities), which is what Let's Encrypt and Pebble offer. ""
// when none is known.
func (m *Manager) dnsPersistIssuerName(ctx context.Context, iss *issuer, client *acme.Client) string {
	if n := m.DNSPersist01.IssuerDomainName; n != "" {
		return n
	}
	ps := &m.st.dnsPersist
	ps.mu.Lock()
	n := ps.learned[iss.url]
	ps.mu.Unlock()
	if n != "" {
		return n
	}
	if dir, err := client.Directory(ctx); err == nil && len(dir.Meta.CAAIdentities) > 0 {
		return strings.ToLower(dir.Meta.CAAIdentities[0])
	}
	return ""
}

// dnsPersistPrecheck runs before an order when dns-persist-01 is read-only:
// it looks the name's record up, at no cost to the CA. When it is missing
// the operator is told which record to create (EventDNSRecordMissing,
// Certificates), the Manager watches DNS for it, and the order goes on
// with the other challenge types if there are any, else fails at once
// with the *solvers.PersistRecordError.
func (m *Manager) dnsPersistPrecheck(ctx context.Context, iss *issuer, client *acme.Client, name string, s map[string]acme.Solver, types []string) (map[string]acme.Solver, []string, error) {
	if s[acme.ChallengeDNSPersist01] == nil {
		return s, types, nil
	}
	d := m.dnsPersistReadOnly()
	if d == nil {
		m.dnsPersistConfigEnding(ctx, iss, client, name)
		return s, types, nil
	}
	issuerName := m.dnsPersistIssuerName(ctx, iss, client)
	if issuerName == "" {
		return s, types, nil // Present learns it from the challenge
	}
	want := d.RecordFor(issuerName, client.AccountURL, m.dnsPersistWildcard(name))
	found, err := d.Check(ctx, name, want)
	if err == nil {
		m.dnsPersistFound(name, iss, want, found)
		return s, types, nil
	}
	var pe *solvers.PersistRecordError
	if errors.As(err, &pe) {
		m.dnsPersistMissing(name, iss, want, pe)
	}
	if len(types) == 1 {
		return nil, nil, err
	}
	st := m.st
	st.log.Info("autotls: dns-persist-01 record not usable yet; ordering with the other challenge types", "name", name, "err", err)
	rest := make(map[string]acme.Solver, len(s))
	for t, v := range s {
		if t != acme.ChallengeDNSPersist01 {
			rest[t] = v
		}
	}
	return rest, slices.DeleteFunc(slices.Clone(types), func(t string) bool { return t == acme.ChallengeDNSPersist01 }), nil
}

// dnsPersistConfigEnding reports, once per name and persistUntil, that
// the records a provider-mode DNSPersist01 creates end soon: its
// PersistUntil is within PersistUntilWarning.
func (m *Manager) dnsPersistConfigEnding(ctx context.Context, iss *issuer, client *acme.Client, name string) {
	d := m.DNSPersist01
	if d.PersistUntil.IsZero() {
		return
	}
	want := d.RecordFor(m.dnsPersistIssuerName(ctx, iss, client), client.AccountURL, m.dnsPersistWildcard(name))
	if !d.EndsSoon(want) {
		return
	}
	ps := &m.st.dnsPersist
	key := dnsPersistKey{name, iss.url}
	ps.mu.Lock()
	old := ps.needs[key]
	if old != nil && old.ending && old.record.PersistUntil.Equal(want.PersistUntil) {
		ps.mu.Unlock()
		return
	}
	rec := record.DNS{
		Name: solvers.PersistRecordLabel + "." + strings.TrimPrefix(name, "*."), Type: "TXT",
		Value: want.String(), ZoneFileValue: want.ZoneFileValue(), Issuer: iss.url,
		Reason:       fmt.Sprintf("DNSPersist01.PersistUntil (%s) is near: the records it creates end then; set a later one, or none", want.PersistUntil.UTC().Format(time.RFC3339)),
		PersistUntil: want.PersistUntil,
	}
	if ps.needs == nil {
		ps.needs = make(map[dnsPersistKey]*dnsPersistNeed)
	}
	ps.needs[key] = &dnsPersistNeed{want: want, record: rec, ending: true}
	ps.mu.Unlock()
	m.st.log.Warn("autotls: the dns-persist-01 records created for "+name+" end soon", "record", rec.String(), "persist_until", rec.PersistUntil)
	m.emit(Event{Type: EventDNSRecordEnding, Name: name, Issuer: iss.url, DNSRecord: &rec})
}

// dnsPersistObtained learns from a failed order's error: a read-only
// Present that found no record names the issuer domain name the CA
// offers, and the record to create.
func (m *Manager) dnsPersistObtained(name string, iss *issuer, err error) {
	d := m.dnsPersistReadOnly()
	var pe *solvers.PersistRecordError
	if d == nil || err == nil || !errors.As(err, &pe) {
		return
	}
	ps := &m.st.dnsPersist
	ps.mu.Lock()
	if ps.learned == nil {
		ps.learned = make(map[string]string)
	}
	ps.learned[iss.url] = pe.Record.IssuerDomainName
	ps.mu.Unlock()
	want := pe.Record
	want.Wildcard = want.Wildcard || m.dnsPersistWildcard(name)
	m.dnsPersistMissing(name, iss, want, pe)
}

// dnsPersistMissing records that name waits for a record, reports it when
// it is new or changed, and makes sure DNS is watched for it.
func (m *Manager) dnsPersistMissing(name string, iss *issuer, want solvers.PersistRecord, pe *solvers.PersistRecordError) {
	rec := record.DNS{Name: pe.Name, Type: "TXT", Value: want.String(), ZoneFileValue: want.ZoneFileValue(), Issuer: iss.url, Reason: pe.Reason}
	st := m.st
	ps := &st.dnsPersist
	key := dnsPersistKey{name, iss.url}
	ps.mu.Lock()
	if ps.needs == nil {
		ps.needs = make(map[dnsPersistKey]*dnsPersistNeed)
	}
	old := ps.needs[key]
	ps.needs[key] = &dnsPersistNeed{want: want, record: rec}
	start := !ps.watching
	ps.watching = true
	ps.mu.Unlock()
	if old == nil || old.ending || old.record.Value != rec.Value || old.record.Name != rec.Name {
		st.log.Warn("autotls: create this DNS record for "+name+" (read-only dns-persist-01); the certificate is obtained as soon as it is published", "record", rec.String(), "reason", rec.Reason)
		m.emit(Event{Type: EventDNSRecordMissing, Name: name, Issuer: iss.url, DNSRecord: &rec, Err: pe})
	}
	if start {
		m.startDNSRecordWatch()
	}
}

// startDNSRecordWatch starts watchDNSRecords unless the Manager is closed.
func (m *Manager) startDNSRecordWatch() {
	st := m.st
	st.flights.ifOpen(func() {
		st.wg.Add(1)
		go func() {
			defer st.wg.Done()
			m.watchDNSRecords()
		}()
	})
}

// dnsPersistFound clears name's missing record, and reports a published
// record whose persistUntil is near (once per persistUntil).
func (m *Manager) dnsPersistFound(name string, iss *issuer, want, found solvers.PersistRecord) {
	d := m.DNSPersist01
	ps := &m.st.dnsPersist
	key := dnsPersistKey{name, iss.url}
	ps.mu.Lock()
	old := ps.needs[key]
	var ending *record.DNS
	if d.EndsSoon(found) {
		if old == nil || !old.ending || !old.record.PersistUntil.Equal(found.PersistUntil) {
			rec := record.DNS{
				Name: solvers.PersistRecordLabel + "." + strings.TrimPrefix(name, "*."), Type: "TXT",
				Value: want.String(), ZoneFileValue: want.ZoneFileValue(), Issuer: iss.url,
				Reason:       fmt.Sprintf("the published record ends at %s (persistUntil): publish this one before then", found.PersistUntil.UTC().Format(time.RFC3339)),
				PersistUntil: found.PersistUntil,
			}
			ending = &rec
			if ps.needs == nil {
				ps.needs = make(map[dnsPersistKey]*dnsPersistNeed)
			}
			ps.needs[key] = &dnsPersistNeed{want: want, record: rec, ending: true}
		}
	} else if old != nil {
		delete(ps.needs, key)
	}
	ps.mu.Unlock()
	if old != nil && !old.ending {
		m.emit(Event{Type: EventDNSRecordFound, Name: name, Issuer: iss.url, DNSRecord: &old.record})
	}
	if ending != nil {
		m.st.log.Warn("autotls: the dns-persist-01 record of "+name+" ends soon", "record", ending.String(), "persist_until", ending.PersistUntil)
		m.emit(Event{Type: EventDNSRecordEnding, Name: name, Issuer: iss.url, DNSRecord: ending})
	}
}

// watchDNSRecords looks up every record a name waits for, every
// DNSRecordCheckInterval, until the Manager closes; a name whose record
// has appeared is obtained at once (its backoff forgotten), unless it has
// a certificate not yet due for renewal. It stops when no name waits, and
// is started again by the next missing record.
func (m *Manager) watchDNSRecords() {
	st := m.st
	d := m.DNSPersist01
	ps := &st.dnsPersist
	defer func() {
		if v := recover(); v != nil {
			ps.mu.Lock()
			ps.watching = false
			ps.mu.Unlock()
			guard(func() {
				st.log.Error("autotls: recovered from a panic while watching dns-persist-01 records; watching again at the next missing record", "panic", fmt.Sprint(v))
			})
		}
	}()
	t := time.NewTicker(m.dnsRecordCheckInterval())
	defer t.Stop()
	for {
		select {
		case <-st.ctx.Done():
			ps.mu.Lock()
			ps.watching = false
			ps.mu.Unlock()
			return
		case <-t.C:
		}
		type item struct {
			key  dnsPersistKey
			want solvers.PersistRecord
		}
		var items []item
		ps.mu.Lock()
		for k, n := range ps.needs {
			if !n.ending {
				items = append(items, item{k, n.want})
			}
		}
		if len(items) == 0 {
			ps.watching = false
			ps.mu.Unlock()
			return
		}
		ps.mu.Unlock()
		for _, it := range items {
			ctx, cancel := context.WithTimeout(st.ctx, time.Minute)
			found, err := d.Check(ctx, it.key.name, it.want)
			cancel()
			if err != nil {
				continue
			}
			iss := m.issuerByURL(it.key.issuer)
			if iss == nil {
				continue
			}
			m.dnsPersistFound(it.key.name, iss, it.want, found)
			// A certificate obtained meanwhile with another challenge
			// type stays until its renewal, which uses the record.
			e := st.cache.get(it.key.name)
			if e != nil && m.now().Before(e.renewAt) {
				continue
			}
			st.log.Info("autotls: dns-persist-01 record published; obtaining the certificate", "name", it.key.name)
			st.failures.clear(it.key.name)
			m.enqueueIssue(it.key.name, e != nil)
		}
	}
}

// issuerByURL returns the issuer with the directory URL u.
func (m *Manager) issuerByURL(u string) *issuer {
	for _, iss := range m.st.issuers {
		if iss.url == u {
			return iss
		}
	}
	return nil
}

// dnsRecords returns the records name waits for, or that end soon.
func (m *Manager) dnsRecords(name string) []record.DNS {
	ps := &m.st.dnsPersist
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var out []record.DNS
	for k, n := range ps.needs {
		if k.name == name {
			out = append(out, n.record)
		}
	}
	slices.SortFunc(out, func(a, b record.DNS) int { return strings.Compare(a.Issuer, b.Issuer) })
	return out
}

// dnsRecordNames returns the names that wait for a record.
func (m *Manager) dnsRecordNames() []string {
	ps := &m.st.dnsPersist
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var out []string
	for k := range ps.needs {
		out = append(out, k.name)
	}
	return out
}

// addDNSRecords adds the records names need to their infos (a name that
// has none yet gets one).
func (m *Manager) addDNSRecords(infos map[string]*record.Certificate) {
	for _, name := range m.dnsRecordNames() {
		info := infos[name]
		if info == nil {
			info = &record.Certificate{Name: name, Issuer: m.st.primary().url}
			infos[name] = info
		}
		if info.DNSRecords == nil {
			info.DNSRecords = m.dnsRecords(name)
		}
	}
}
