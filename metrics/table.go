package metrics

import (
	"slices"
	"strings"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/record"
)

// A nameRecord is what the collector keeps per name: a few words, not the
// whole record.Certificate, so that a million names stay cheap.
type nameRecord struct {
	name, issuer, reason string
	// notAfter and renewAt are Unix nanoseconds; zero means none (no
	// certificate, no renewal planned).
	notAfter, renewAt  int64
	failing, notStored bool
}

// A table holds the records of every name the collector knows of: those
// of the last read of Manager.Certificates, sorted by name, then those
// that events added since, indexed by extra.
type table struct {
	recs   []nameRecord
	sorted int // recs[:sorted] are sorted by name
	extra  map[string]int
}

// newTable builds a table from a read of Manager.Certificates.
func newTable(infos []record.Certificate) *table {
	t := &table{recs: make([]nameRecord, 0, len(infos))}
	for i := range infos {
		t.recs = append(t.recs, fromInfo(&infos[i]))
	}
	byName := func(a, b nameRecord) int { return strings.Compare(a.name, b.name) }
	if !slices.IsSortedFunc(t.recs, byName) {
		slices.SortFunc(t.recs, byName)
	}
	t.recs = slices.CompactFunc(t.recs, func(a, b nameRecord) bool { return a.name == b.name })
	t.sorted = len(t.recs)
	return t
}

// snapshotTable builds a table from the Manager's snapshot, the picture
// the status page reads too: a record per row, sorted by name.
func snapshotTable(s *autotls.Snapshot) *table {
	t := &table{recs: make([]nameRecord, 0, s.Len())}
	for i := range s.Len() {
		r := s.Row(i)
		rec := nameRecord{
			name:      r.Name,
			issuer:    r.Issuer,
			failing:   !r.LastErrorAt.IsZero(),
			notStored: !r.Stored && !r.NotAfter.IsZero(),
		}
		if !r.NotAfter.IsZero() {
			rec.notAfter = r.NotAfter.UnixNano()
		}
		if !r.RenewAt.IsZero() {
			rec.renewAt, rec.reason = r.RenewAt.UnixNano(), r.RenewReason
		}
		t.recs = append(t.recs, rec)
	}
	slices.SortFunc(t.recs, func(a, b nameRecord) int { return strings.Compare(a.name, b.name) })
	t.sorted = len(t.recs)
	return t
}

func fromInfo(info *record.Certificate) nameRecord {
	r := nameRecord{
		name:      info.Name,
		issuer:    info.Issuer,
		failing:   info.LastError != "",
		notStored: !info.Stored && !info.NotAfter.IsZero(),
	}
	if !info.NotAfter.IsZero() {
		r.notAfter = info.NotAfter.UnixNano()
	}
	if !info.RenewAt.IsZero() {
		r.renewAt, r.reason = info.RenewAt.UnixNano(), info.RenewReason
	}
	return r
}

// find returns the index of name's record, or -1.
func (t *table) find(name string) int {
	if i, ok := slices.BinarySearchFunc(t.recs[:t.sorted], name, func(r nameRecord, n string) int { return strings.Compare(r.name, n) }); ok {
		return i
	}
	if i, ok := t.extra[name]; ok {
		return i
	}
	return -1
}

// apply changes name's record as u says, adding the record if needed.
func (t *table) apply(name string, u update) {
	i := t.find(name)
	if i < 0 {
		if t.extra == nil {
			t.extra = make(map[string]int)
		}
		i = len(t.recs)
		t.recs = append(t.recs, nameRecord{name: name, issuer: u.issuer})
		t.extra[name] = i
	}
	r := &t.recs[i]
	if u.cert {
		r.notAfter = u.notAfter
		if u.issuer != "" {
			r.issuer = u.issuer
		}
	}
	if u.plan {
		r.renewAt, r.reason = u.renewAt, u.reason
	}
	if u.failing != 0 {
		r.failing = u.failing > 0
	}
	if u.notStored != 0 {
		r.notStored = u.notStored > 0
	}
}

// An update is what one or more events say about a name, field by field;
// the zero value changes nothing.
type update struct {
	// issuer is the issuer of the certificate of cert (or of a record
	// the update adds).
	issuer string
	// cert: the name's certificate now expires at notAfter.
	cert     bool
	notAfter int64
	// plan: its renewal is planned at renewAt for reason.
	plan    bool
	renewAt int64
	reason  string
	// failing and notStored: 0 unchanged, 1 true, -1 false.
	failing, notStored int8
}

// then returns u followed by next: what next sets wins.
func (u update) then(next update) update {
	if next.issuer != "" && (next.cert || u.issuer == "") {
		u.issuer = next.issuer
	}
	if next.cert {
		u.cert, u.notAfter = true, next.notAfter
	}
	if next.plan {
		u.plan, u.renewAt, u.reason = true, next.renewAt, next.reason
	}
	if next.failing != 0 {
		u.failing = next.failing
	}
	if next.notStored != 0 {
		u.notStored = next.notStored
	}
	return u
}
