package autotls

import (
	"context"
	"encoding/hex"
	"errors"
	"net"
	"slices"
	"strings"
	"time"
)

// CertificateInfo is the state of one managed certificate (or of a managed
// name that has none yet), as [Manager.Certificates] reports it. It never
// carries key material.
type CertificateInfo struct {
	// Name is the name the certificate is managed under.
	Name string
	// Names are the certificate's subject alternative names (DNS names,
	// then IP addresses); empty when there is no certificate.
	Names []string
	// Issuer is the ACME directory URL of the CA.
	Issuer string
	// Serial is the certificate's serial number in hex; empty when there
	// is no certificate.
	Serial string
	// NotBefore and NotAfter bound the certificate's validity.
	NotBefore, NotAfter time.Time
	// RenewAt is when the Manager plans to renew it, and RenewReason why
	// then: ReasonSchedule, ReasonARI or ReasonARIPast.
	RenewAt     time.Time
	RenewReason string
	// RenewBy is the deadline the Manager works to: the end of the window
	// RenewAt was chosen in ([RenewalDeadline]), or RenewAt when that is
	// later (a new certificate's floor, the catch-up after a restart);
	// never before RenewAt. A certificate still current after RenewBy was
	// not renewed as planned. Zero when there is no certificate, and for
	// a certificate the Manager does not plan (a relay's).
	RenewBy time.Time
	// ARIWindowStart and ARIWindowEnd are the CA's suggested renewal
	// window (RFC 9773), zero when the CA offers none or it has not been
	// fetched; ARIExplanationURL is the CA's explanation of it, and
	// NextARIPoll when the Manager asks again.
	ARIWindowStart, ARIWindowEnd time.Time
	ARIExplanationURL            string
	NextARIPoll                  time.Time
	// LastError is the last failed attempt to obtain or renew it, at
	// LastErrorAt: this Manager's, or, for a certificate read from
	// storage by the call (not in memory), the failed renewal recorded
	// with it in storage by any Manager sharing the storage, whichever is
	// newer. A renewal that succeeds clears both. BackoffUntil is when
	// this Manager's next attempt may be made (zero when none is pending).
	LastError    string
	LastErrorAt  time.Time
	BackoffUntil time.Time
	// Stored reports whether the certificate is in storage (false while a
	// failed Store is retried); InMemory whether it is cached, and so
	// served without a storage read.
	Stored, InMemory bool
	// Managed reports whether the name was given to Manage.
	Managed bool
	// DNSRecords are the name's dns-persist-01 records that need the
	// operator: with a read-only Manager.DNSPersist01, the record while
	// it is missing (the certificate is obtained as soon as it appears);
	// and, once its persistUntil is near (see EventDNSRecordEnding), the
	// record to publish instead (read-only) or the one the provider
	// writes, whose DNSPersist01.PersistUntil should move (with a
	// Provider). Empty when none needs anything.
	DNSRecords []DNSRecord
	// Tenant is the tenant a certificate issued through an ACME relay
	// (relay.Server.Certificates in package relay) belongs to; a Manager
	// leaves it empty.
	Tenant string
	// Revoked reports that the certificate was revoked (a relay records
	// the revocations it passed upstream); a Manager never sets it.
	Revoked bool
}

// Certificates lists every certificate the Manager manages — those in
// memory, those in its storage for its issuers (read from storage: the
// call costs one List per issuer and one Load per stored certificate not
// in memory, eight at a time; of those only the leaf is parsed), and the
// names given to Manage that have none yet — with their state, sorted by
// name. A name stored for several issuers is listed with the certificate
// that expires last.
// A Manager that only reads a storage (a command, a second node) shows
// the last failed renewal recorded there.
//
// Its cost grows with the number of stored certificates (about 25 µs and
// 90 allocations each); a view of many names reads a [Snapshot] instead,
// which loads no certificate the schedule index knows, and loads the rows
// it shows with [Manager.CertificatesOf].
func (m *Manager) Certificates(ctx context.Context) ([]CertificateInfo, error) {
	st := m.state()
	now := m.now()
	infos := map[string]*CertificateInfo{}
	for _, e := range st.cache.all() {
		info := m.entryInfo(e)
		info.InMemory = true
		infos[e.name] = info
	}
	var errs []error
	if store, err := m.storage(); err != nil {
		errs = append(errs, err)
	} else {
		listErrs, err := m.storedInfos(ctx, store, infos)
		if err != nil {
			return nil, err
		}
		errs = append(errs, listErrs...)
	}
	st.managed.read(func(managed map[string]bool) {
		for name := range managed {
			if infos[name] == nil {
				infos[name] = &CertificateInfo{Name: name, Issuer: st.primary().url}
			}
			infos[name].Managed = true
		}
	})
	m.addDNSRecords(infos)
	m.addFailures(infos, now)
	out := make([]CertificateInfo, 0, len(infos))
	for _, info := range infos {
		out = append(out, *info)
	}
	slices.SortFunc(out, func(a, b CertificateInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, errors.Join(errs...)
}

// addFailures adds the failures the Manager remembers to the infos of
// their names (a refused or failed on-demand name has none: it is not
// managed).
func (m *Manager) addFailures(infos map[string]*CertificateInfo, now time.Time) {
	m.st.failures.each(infos, func(info *CertificateInfo, f *failure) {
		if info.LastErrorAt.IsZero() || !f.at.Before(info.LastErrorAt) {
			info.LastError, info.LastErrorAt = f.err.Error(), f.at
		}
		if now.Before(f.until) {
			info.BackoffUntil = f.until
		}
	})
}

// CertificatesOf returns the state of the certificates managed under
// names, as [Manager.Certificates] describes each, in the order given;
// a name the Manager knows nothing of (no certificate in memory or in
// storage, not managed, no failure) is left out. It loads only those
// names: at most one storage Load per name and issuer for a name not in
// memory, eight at a time. It is how a view shows the rows of a
// [Snapshot] it displays.
func (m *Manager) CertificatesOf(ctx context.Context, names ...string) ([]CertificateInfo, error) {
	st := m.state()
	now := m.now()
	infos := make(map[string]*CertificateInfo, len(names))
	var jobs []storedJob
	for _, name := range names {
		if _, seen := infos[name]; seen {
			continue
		}
		if e := st.cache.get(name); e != nil {
			info := m.entryInfo(e)
			info.InMemory = true
			infos[name] = info
			continue
		}
		infos[name] = nil
		for _, iss := range st.issuers {
			jobs = append(jobs, storedJob{iss, name})
		}
	}
	var errs []error
	if len(jobs) > 0 {
		if store, err := m.storage(); err != nil {
			errs = append(errs, err)
		} else {
			got, err := m.loadStoredInfos(ctx, store, jobs)
			if err != nil {
				return nil, err
			}
			for name, info := range got {
				infos[name] = info
			}
		}
	}
	st.managed.read(func(managed map[string]bool) {
		for name, info := range infos {
			if !managed[name] {
				continue
			}
			if info == nil {
				info = &CertificateInfo{Name: name, Issuer: st.primary().url}
				infos[name] = info
			}
			info.Managed = true
		}
	})
	for name, info := range infos {
		recs := m.dnsRecords(name)
		if len(recs) == 0 {
			continue
		}
		if info == nil {
			info = &CertificateInfo{Name: name, Issuer: st.primary().url}
			infos[name] = info
		}
		info.DNSRecords = recs
	}
	known := make(map[string]*CertificateInfo, len(infos))
	for name, info := range infos {
		if info != nil {
			known[name] = info
		}
	}
	// A failed on-demand name that is not managed has no info: it stays
	// out, as in Certificates.
	m.addFailures(known, now)
	out := make([]CertificateInfo, 0, len(known))
	for _, name := range names {
		if info := known[name]; info != nil {
			out = append(out, *info)
			delete(known, name)
		}
	}
	return out, errors.Join(errs...)
}

// entryInfo describes a cached or loaded entry.
func (m *Manager) entryInfo(e *entry) *CertificateInfo {
	leaf := e.cert.Leaf
	info := &CertificateInfo{
		Name:        e.name,
		Names:       append([]string(nil), leaf.DNSNames...),
		Issuer:      e.iss.url,
		Serial:      hex.EncodeToString(leaf.SerialNumber.Bytes()),
		NotBefore:   e.notBefore,
		NotAfter:    e.notAfter,
		RenewAt:     e.renewAt,
		RenewReason: e.reason,
		RenewBy:     renewBy(e.notBefore, e.notAfter, e.ari, e.renewAt),
		NextARIPoll: e.ariPoll,
		Stored:      e.unstored == nil,
	}
	for _, ip := range leaf.IPAddresses {
		info.Names = append(info.Names, net.IP(ip).String())
	}
	if a := e.ari; a != nil {
		info.ARIWindowStart, info.ARIWindowEnd, info.ARIExplanationURL = a.WindowStart, a.WindowEnd, a.ExplanationURL
		if info.NextARIPoll.IsZero() {
			info.NextARIPoll = a.NextPoll
		}
	}
	return info
}

// nameFromKey inverts storageName.
func nameFromKey(s string) string {
	if base, ok := strings.CutPrefix(s, "_wildcard."); ok {
		return "*." + base
	}
	if strings.Count(s, "-") >= 2 && !strings.Contains(s, ".") {
		// An IPv6 address, whose colons became dashes.
		if ip := net.ParseIP(strings.ReplaceAll(s, "-", ":")); ip != nil {
			return ip.String()
		}
	}
	return s
}
