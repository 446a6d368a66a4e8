package autotls

import (
	"context"
	"encoding/hex"
	"errors"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/tlsmint/tlsmint/record"
)

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
func (m *Manager) Certificates(ctx context.Context) ([]record.Certificate, error) {
	st := m.state()
	now := m.now()
	infos := map[string]*record.Certificate{}
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
				infos[name] = &record.Certificate{Name: name, Issuer: st.primary().url}
			}
			infos[name].Managed = true
		}
	})
	m.addDNSRecords(infos)
	m.addFailures(infos, now)
	out := make([]record.Certificate, 0, len(infos))
	for _, info := range infos {
		out = append(out, *info)
	}
	slices.SortFunc(out, func(a, b record.Certificate) int { return strings.Compare(a.Name, b.Name) })
	return out, errors.Join(errs...)
}

// addFailures adds the failures the Manager remembers to the infos of
// their names (a refused or failed on-demand name has none: it is not
// managed).
func (m *Manager) addFailures(infos map[string]*record.Certificate, now time.Time) {
	m.st.failures.each(infos, func(info *record.Certificate, f *failure) {
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
func (m *Manager) CertificatesOf(ctx context.Context, names ...string) ([]record.Certificate, error) {
	st := m.state()
	now := m.now()
	infos := make(map[string]*record.Certificate, len(names))
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
				info = &record.Certificate{Name: name, Issuer: st.primary().url}
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
			info = &record.Certificate{Name: name, Issuer: st.primary().url}
			infos[name] = info
		}
		info.DNSRecords = recs
	}
	known := make(map[string]*record.Certificate, len(infos))
	for name, info := range infos {
		if info != nil {
			known[name] = info
		}
	}
	// A failed on-demand name that is not managed has no info: it stays
	// out, as in Certificates.
	m.addFailures(known, now)
	out := make([]record.Certificate, 0, len(known))
	for _, name := range names {
		if info := known[name]; info != nil {
			out = append(out, *info)
			delete(known, name)
		}
	}
	return out, errors.Join(errs...)
}

// entryInfo describes a cached or loaded entry.
func (m *Manager) entryInfo(e *entry) *record.Certificate {
	leaf := e.cert.Leaf
	info := &record.Certificate{
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
