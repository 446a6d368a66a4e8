package autotls

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tlsmint/tlsmint/storage"
)

// Freshness of the shared snapshot (see [Manager.Snapshot]).
const (
	// SnapshotMaxAge is how long a snapshot is reused as it is: a call
	// within SnapshotMaxAge of its build gets it unchanged. A snapshot
	// whose build took long is reused for snapshotDuty times its build
	// time instead, so that building snapshots takes at most a twentieth
	// of the time whatever the number of names.
	SnapshotMaxAge = time.Second
	snapshotDuty   = 20
	// snapshotStale is how old a snapshot may be and still be returned
	// while the next is built (or three times its maximum age, when that
	// is longer); an older one is replaced before the call returns.
	snapshotStale = time.Minute
	// snapshotTimeout bounds one build run for the callers that share
	// it.
	snapshotTimeout = 5 * time.Minute
)

// ErrBadCursor is the error of [Snapshot.Seek] for a cursor that
// [Snapshot.Cursor] did not make.
var ErrBadCursor = errors.New("autotls: malformed snapshot cursor")

// A Snapshot is a compact picture of every name a Manager manages — the
// certificates it holds in memory, those its storage's schedule index
// lists (index/, see "Start-up and the schedule index" in the package
// doc), the stored certificates the index does not know yet, the names
// given to Manage and the failures it remembers — as rows ordered by
// expiry: names without a certificate first, then the soonest NotAfter,
// then by name. It is built without loading a certificate the index
// knows, so it is what a view of many names reads first: a status page,
// a metrics scrape, a command's list; a view then loads the full state
// of only the rows it shows ([Manager.CertificatesOf]).
//
// A Snapshot is immutable and safe for concurrent use.
type Snapshot struct {
	at      time.Time
	built   time.Time // wall clock, for its age
	took    time.Duration
	issuers []string
	rows    []snapRow
	err     error
}

// snapRow is one name: 56 bytes and the name's bytes.
type snapRow struct {
	name string
	// notBefore and notAfter are Unix seconds (a certificate's times
	// are whole seconds), renewAt and failedAt Unix nanoseconds; 0:
	// unknown or none.
	notBefore, notAfter, renewAt, failedAt int64
	// renewBy is the Manager's deadline (record.Certificate.RenewBy) in
	// whole seconds before notAfter, rounded towards notAfter, when
	// flags has rowRenewBy: a row from memory or from a stored
	// certificate read for the snapshot. A row only the index knows has
	// none (the index holds no ARI window): Row estimates it.
	renewBy int32
	iss     uint16
	reason  uint8
	flags   uint8
}

const (
	rowStored uint8 = 1 << iota
	rowInMemory
	rowManaged
	rowRenewBy
)

// setRenewBy records the deadline by in r, whose notAfter is set.
func (r *snapRow) setRenewBy(by time.Time) {
	if by.IsZero() {
		return
	}
	left := time.Unix(r.notAfter, 0).Sub(by) / time.Second
	r.renewBy = int32(min(max(left, math.MinInt32), math.MaxInt32))
	r.flags |= rowRenewBy
}

// renewByOf returns r's deadline: the one recorded, or for a row only the
// index knows, the end of the Manager's own window or the planned renewal
// when that is later.
func (r *snapRow) renewByOf() time.Time {
	if r.notAfter == 0 {
		return time.Time{}
	}
	if r.flags&rowRenewBy != 0 {
		return time.Unix(r.notAfter-int64(r.renewBy), 0)
	}
	return renewBy(unixOrZero(r.notBefore), time.Unix(r.notAfter, 0), nil, nanoOrZero(r.renewAt))
}

func reasonCode(r string) uint8 {
	switch r {
	case ReasonSchedule:
		return 1
	case ReasonARI:
		return 2
	case ReasonARIPast:
		return 3
	}
	return 0
}

func reasonName(c uint8) string {
	switch c {
	case 1:
		return ReasonSchedule
	case 2:
		return ReasonARI
	case 3:
		return ReasonARIPast
	}
	return ""
}

// CertificateSummary is one row of a [Snapshot]: what the Manager knows of
// a name without loading its certificate. NotBefore and NotAfter are whole
// seconds, as certificates hold them; RenewAt and LastErrorAt as exact as
// the Manager knows them (whole seconds when only the index knows the name).
type CertificateSummary struct {
	// Name is the name the certificate is managed under, Issuer the CA's
	// directory URL.
	Name   string
	Issuer string
	// NotBefore and NotAfter bound the certificate's validity; NotAfter
	// is zero when there is no certificate, NotBefore also when the
	// index was written before it held it.
	NotBefore, NotAfter time.Time
	// RenewAt is the planned renewal, RenewReason why then (empty when
	// only the index knows the name: it holds no reason).
	RenewAt     time.Time
	RenewReason string
	// RenewBy is the deadline as in [record.Certificate], in whole seconds
	// (rounded towards NotAfter). For a name only the index knows
	// it is estimated from what the index holds, without the CA's
	// renewal window: the end of the Manager's own window, or RenewAt
	// when that is later; loading the row ([Manager.CertificatesOf])
	// gives the exact one. Zero when there is no certificate.
	RenewBy time.Time
	// LastErrorAt is the time of the last failed attempt known: this
	// Manager's, or a renewal failure recorded in storage; zero when
	// none. The error itself is loaded with the row (CertificatesOf).
	LastErrorAt time.Time
	// Stored, InMemory and Managed are as in [record.Certificate].
	Stored, InMemory, Managed bool
}

// At returns the Manager's time when s was built.
func (s *Snapshot) At() time.Time { return s.at }

// Len returns the number of rows.
func (s *Snapshot) Len() int { return len(s.rows) }

// Err returns what could not be read when s was built (a storage List or
// index read that failed); the rows hold the rest.
func (s *Snapshot) Err() error { return s.err }

// Row returns row i, 0 ≤ i < Len.
func (s *Snapshot) Row(i int) CertificateSummary {
	r := &s.rows[i]
	c := CertificateSummary{
		Name:        r.name,
		RenewReason: reasonName(r.reason),
		Stored:      r.flags&rowStored != 0,
		InMemory:    r.flags&rowInMemory != 0,
		Managed:     r.flags&rowManaged != 0,
		NotBefore:   unixOrZero(r.notBefore),
		NotAfter:    unixOrZero(r.notAfter),
		RenewAt:     nanoOrZero(r.renewAt),
		RenewBy:     r.renewByOf(),
		LastErrorAt: nanoOrZero(r.failedAt),
	}
	if int(r.iss) < len(s.issuers) {
		c.Issuer = s.issuers[r.iss]
	}
	return c
}

// Name returns row i's name without building its summary.
func (s *Snapshot) Name(i int) string { return s.rows[i].name }

func nanoOrZero(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// secNano converts an index record's Unix seconds to nanoseconds.
func secNano(sec int64) int64 { return sec * int64(time.Second) }

func unixOrZero(sec int64) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0)
}

// Cursor returns the cursor that continues a listing after row i: Seek
// of it returns i+1 in s, and in a later snapshot the position of the
// first row that sorts after row i did. It is printable ASCII but for the
// name's own characters and otherwise opaque.
func (s *Snapshot) Cursor(i int) string {
	r := &s.rows[i]
	return cursorOf(r.notAfter, r.name)
}

func cursorOf(notAfter int64, name string) string {
	if notAfter == 0 {
		return "-." + name
	}
	return strconv.FormatInt(notAfter, 10) + "." + name
}

// Seek returns the position of the first row after cursor (0 for the
// empty cursor), or ErrBadCursor. It costs a binary search.
func (s *Snapshot) Seek(cursor string) (int, error) {
	if cursor == "" {
		return 0, nil
	}
	t, name, ok := strings.Cut(cursor, ".")
	if !ok || name == "" {
		return 0, fmt.Errorf("%w: %.64q", ErrBadCursor, cursor)
	}
	var notAfter int64
	if t != "-" {
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("%w: %.64q", ErrBadCursor, cursor)
		}
		notAfter = n
	}
	key := snapRow{name: name, notAfter: notAfter}
	i, found := slices.BinarySearchFunc(s.rows, key, compareRows)
	if found {
		i++
	}
	return i, nil
}

// compareRows orders rows: no certificate first, then by NotAfter, then
// by name.
func compareRows(a, b snapRow) int {
	if (a.notAfter == 0) != (b.notAfter == 0) {
		if a.notAfter == 0 {
			return -1
		}
		return 1
	}
	return cmp.Or(cmp.Compare(a.notAfter, b.notAfter), strings.Compare(a.name, b.name))
}

// sortRows returns rows in compareRows' order. It sorts 16-byte keys and
// then copies each row once: at a million rows, half the time of sorting
// the rows themselves.
func sortRows(rows []snapRow) []snapRow {
	type key struct {
		notAfter int64 // math.MinInt64: no certificate
		i        int32
	}
	keys := make([]key, len(rows))
	for i := range rows {
		k := key{rows[i].notAfter, int32(i)}
		if k.notAfter == 0 {
			k.notAfter = math.MinInt64
		}
		keys[i] = k
	}
	slices.SortFunc(keys, func(a, b key) int {
		if c := cmp.Compare(a.notAfter, b.notAfter); c != 0 {
			return c
		}
		return strings.Compare(rows[a.i].name, rows[b.i].name)
	})
	// A new slice, filled in order: the reads are scattered but the
	// writes are not, which at a million rows is twice as fast as moving
	// the rows in place along the permutation's cycles.
	out := make([]snapRow, len(rows))
	for j, k := range keys {
		out[j] = rows[k.i]
	}
	return out
}

// snapshots is the Manager's last Snapshot and the build running.
type snapshots struct {
	mu       sync.Mutex
	cur      *Snapshot
	building *snapBuild
}

type snapBuild struct {
	done chan struct{}
	s    *Snapshot
	err  error
}

// Snapshot returns a Snapshot of every name the Manager manages, shared by
// every view that asks (the status page, the metrics collector, a
// command's list): the first call builds it and the calls meanwhile wait
// for that build; later calls get the last one built, and a call that
// finds it older than SnapshotMaxAge (or than twenty times its build
// time, when the build was slow) gets it still, while a new one is built
// in the background — unless it is older than a minute (and than three
// times that age): then the call waits for the new one, so that a view
// after a quiet hour does not show the hour-old picture.
// [Manager.RefreshSnapshot] builds one at once.
//
// A build costs, per issuer, one List of the index (1,024 small values at
// most) and a Load of each value, one List of the stored certificates,
// and a Load of each stored certificate the index does not know (stored
// by an older version or imported, until a serving Manager's start-up
// discovery indexes it); nothing else of storage. The error reports what
// could not be read; the Snapshot (also Snapshot.Err) holds the rest. It
// is nil only when ctx ended (or the build failed) before a first
// snapshot was built.
func (m *Manager) Snapshot(ctx context.Context) (*Snapshot, error) {
	st := m.state()
	v := &st.views
	v.mu.Lock()
	if cur := v.cur; cur != nil {
		age, maxAge := time.Since(cur.built), max(SnapshotMaxAge, snapshotDuty*cur.took)
		if age < max(snapshotStale, 3*maxAge) {
			if age >= maxAge && v.building == nil {
				m.startSnapshot(v, true)
			}
			v.mu.Unlock()
			return cur, cur.err
		}
		// Too old to show while the next is built (nobody asked for a
		// while): wait for the next.
	}
	old := v.cur
	b := v.building
	if b == nil {
		b = m.startSnapshot(v, false)
	}
	v.mu.Unlock()
	if b == nil {
		// Closed: build under the caller's context.
		return m.RefreshSnapshot(ctx)
	}
	select {
	case <-b.done:
		if b.s == nil && old != nil {
			return old, b.err
		}
		return b.s, b.err
	case <-ctx.Done():
		if old != nil {
			return old, ctx.Err()
		}
		return nil, ctx.Err()
	}
}

// startSnapshot starts a build in a goroutine of the Manager's, v.mu
// held; nil when the Manager is closed.
func (m *Manager) startSnapshot(v *snapshots, background bool) *snapBuild {
	st := m.st
	var b *snapBuild
	st.flights.ifOpen(func() {
		b = &snapBuild{done: make(chan struct{})}
		v.building = b
		st.wg.Add(1)
		go func() {
			defer st.wg.Done()
			defer close(b.done)
			defer func() {
				if p := recover(); p != nil {
					m.recovered("", p)
					b.err = fmt.Errorf("autotls: building a snapshot panicked: %v", p)
				}
				v.mu.Lock()
				if v.building == b {
					v.building = nil
				}
				if b.s != nil && (v.cur == nil || !b.s.built.Before(v.cur.built)) {
					v.cur = b.s
				}
				v.mu.Unlock()
			}()
			ctx, cancel := context.WithTimeout(st.ctx, snapshotTimeout)
			defer cancel()
			b.s, b.err = m.buildSnapshot(ctx)
			if background && b.err != nil && b.s == nil && st.ctx.Err() == nil {
				st.log.Warn("autotls: building a snapshot of the certificates failed", "err", b.err)
			}
		}()
	})
	return b
}

// RefreshSnapshot builds a Snapshot now, under ctx, and makes it the one
// Snapshot returns. Errors are as for Snapshot.
func (m *Manager) RefreshSnapshot(ctx context.Context) (*Snapshot, error) {
	st := m.state()
	s, err := m.buildSnapshot(ctx)
	if s == nil {
		return nil, err
	}
	v := &st.views
	v.mu.Lock()
	if v.cur == nil || !s.built.Before(v.cur.built) {
		v.cur = s
	}
	v.mu.Unlock()
	return s, err
}

// buildSnapshot reads the picture: the index of every issuer, then what
// memory knows better (the index's pending updates, the cache, the
// managed names, the failures). Only the stored certificates the index
// does not know are loaded.
func (m *Manager) buildSnapshot(ctx context.Context) (*Snapshot, error) {
	st := m.state()
	start := time.Now()
	s := &Snapshot{at: m.now()}
	for _, iss := range st.issuers {
		s.issuers = append(s.issuers, iss.url)
	}
	issIndex := func(iss *issuer) uint16 {
		for i, x := range st.issuers {
			if x == iss {
				return uint16(i)
			}
		}
		return 0
	}
	var errs []error
	if store, err := m.storage(); err != nil {
		errs = append(errs, err)
	} else {
		for ii, iss := range st.issuers {
			if err := m.snapshotIssuer(ctx, store, iss, uint16(ii), s); err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				errs = append(errs, err)
			}
		}
	}
	if len(st.issuers) > 1 {
		// A name stored for several issuers: the certificate that
		// expires last, as loadStoredOther would serve it.
		slices.SortFunc(s.rows, func(a, b snapRow) int {
			return cmp.Or(strings.Compare(a.name, b.name), cmp.Compare(b.notAfter, a.notAfter))
		})
		s.rows = slices.CompactFunc(s.rows, func(a, b snapRow) bool { return a.name == b.name })
	}

	// What memory knows better than the index, by name: the index's
	// pending updates, then the cache.
	type overlay struct {
		row     snapRow
		hasRow  bool
		matched bool
	}
	over := map[string]*overlay{}
	st.index.mu.Lock()
	for ref, names := range st.index.pending {
		for name, x := range names {
			over[name] = &overlay{row: snapRow{name: name, notAfter: x[0], renewAt: secNano(x[1]), notBefore: x[2], failedAt: secNano(x[3]), iss: issIndex(ref.iss), flags: rowStored}, hasRow: true}
		}
	}
	st.index.mu.Unlock()
	for _, e := range st.cache.all() {
		r := snapRow{
			name: e.name, notBefore: e.notBefore.Unix(), notAfter: e.notAfter.Unix(), renewAt: e.renewAt.UnixNano(),
			iss: issIndex(e.iss), reason: reasonCode(e.reason), flags: rowInMemory,
		}
		if e.unstored == nil {
			r.flags |= rowStored
		}
		r.setRenewBy(renewBy(e.notBefore, e.notAfter, e.ari, e.renewAt))
		if o := over[e.name]; o != nil {
			r.failedAt = o.row.failedAt
			o.row = r
			continue
		}
		over[e.name] = &overlay{row: r, hasRow: true}
	}
	for _, name := range m.dnsRecordNames() {
		if over[name] == nil {
			over[name] = &overlay{row: snapRow{name: name}}
		}
	}
	failed := st.failures.lastAt()
	st.managed.read(func(managed map[string]bool) {
		managedSeen := 0
		merge := func(r *snapRow) {
			if managed[r.name] {
				r.flags |= rowManaged
				managedSeen++
			}
			if at := failed[r.name]; at > r.failedAt {
				r.failedAt = at
			}
		}
		for i := range s.rows {
			r := &s.rows[i]
			if o := over[r.name]; o != nil {
				o.matched = true
				if o.hasRow {
					failedAt := r.failedAt
					*r = o.row
					r.failedAt = max(r.failedAt, failedAt)
				}
			}
			merge(r)
		}
		for _, o := range over {
			if !o.matched {
				s.rows = append(s.rows, o.row)
				merge(&s.rows[len(s.rows)-1])
			}
		}
		if managedSeen < len(managed) {
			// Managed names without a row: pending (or failing) first
			// orders.
			have := make(map[string]bool, managedSeen)
			for i := range s.rows {
				if s.rows[i].flags&rowManaged != 0 {
					have[s.rows[i].name] = true
				}
			}
			for name := range managed {
				if !have[name] {
					r := snapRow{name: name, flags: rowManaged, failedAt: failed[name]}
					s.rows = append(s.rows, r)
				}
			}
		}
	})
	// A failure that predates the certificate is over: it was renewed
	// since.
	for i := range s.rows {
		if r := &s.rows[i]; r.failedAt != 0 && r.notBefore != 0 && r.failedAt < secNano(r.notBefore) {
			r.failedAt = 0
		}
	}
	s.rows = sortRows(s.rows)
	s.err = errors.Join(errs...)
	s.built = time.Now()
	s.took = s.built.Sub(start)
	return s, s.err
}

// snapshotIssuer adds iss's index and the stored certificates the index
// does not know.
func (m *Manager) snapshotIssuer(ctx context.Context, store storage.Storage, iss *issuer, ii uint16, s *Snapshot) error {
	first := len(s.rows)
	var errs []error
	prefix := "index/" + iss.key + "/"
	buckets, err := store.List(ctx, prefix)
	if err != nil {
		errs = append(errs, fmt.Errorf("autotls: listing the schedule index: %w", err))
	}
	grown := false
	for bi, k := range buckets {
		var b int
		if _, err := fmt.Sscanf(k, prefix+"%03x.json", &b); err != nil || b < 0 || b >= indexBuckets || (indexRef{iss, b}).key() != k {
			continue
		}
		ref := indexRef{iss, b}
		raw, err := store.Load(ctx, ref.key())
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		add := func(name string, x indexRecord) {
			if x[0] != 0 {
				s.rows = append(s.rows, snapRow{name: name, notAfter: x[0], renewAt: secNano(x[1]), notBefore: x[2], failedAt: secNano(x[3]), iss: ii, flags: rowStored})
			}
		}
		before := len(s.rows)
		if scanBucket(raw, add) {
			compactNames(s.rows[before:])
		} else {
			s.rows = s.rows[:before]
			var v indexValue
			if err := json.Unmarshal(raw, &v); err != nil || v.Version != indexVersion {
				errs = append(errs, fmt.Errorf("%w: schedule index %s", errCorrupt, ref.key()))
				continue
			}
			for name, x := range v.Names {
				add(name, x)
			}
		}
		if !grown {
			// Names spread evenly over the buckets: room for the
			// others at once, not by doubling (at a million names,
			// 100 MB less to allocate and copy).
			grown = true
			s.rows = slices.Grow(s.rows, (len(s.rows)-before)*(len(buckets)-bi-1)*9/8)
		}
	}
	if m.indexComplete() {
		return errors.Join(errs...)
	}
	cprefix := "certificates/" + iss.key + "/"
	keys, err := store.List(ctx, cprefix)
	if err != nil {
		errs = append(errs, fmt.Errorf("autotls: listing stored certificates: %w", err))
	}
	var jobs []storedJob
	if len(keys) > 0 {
		// The stored names, less those the index lists: a map of the
		// keys (often far fewer than the index's names), one lookup
		// per index row.
		stored := make(map[string]bool, len(keys))
		for _, k := range keys {
			stored[nameFromKey(strings.TrimSuffix(strings.TrimPrefix(k, cprefix), ".json"))] = true
		}
		for _, r := range s.rows[first:] {
			delete(stored, r.name)
		}
		for name := range stored {
			if m.st.cache.get(name) == nil {
				jobs = append(jobs, storedJob{iss, name})
			}
		}
	}
	infos, err := m.loadStoredInfos(ctx, store, jobs)
	if err != nil {
		return err
	}
	for _, info := range infos {
		r := snapRow{name: info.Name, iss: ii}
		if !info.NotAfter.IsZero() {
			r.notBefore, r.notAfter, r.renewAt = info.NotBefore.Unix(), info.NotAfter.Unix(), info.RenewAt.UnixNano()
			r.reason, r.flags = reasonCode(info.RenewReason), rowStored
			r.setRenewBy(info.RenewBy)
		}
		if !info.LastErrorAt.IsZero() {
			r.failedAt = info.LastErrorAt.UnixNano()
		} else if info.LastError != "" {
			r.failedAt = m.now().UnixNano() // unreadable: a failure now
		}
		s.rows = append(s.rows, r)
	}
	return errors.Join(errs...)
}

// indexFailed records in the index that a renewal of name at iss failed,
// as storeFailure recorded in the stored value s, so that a view lists
// the name as failing without loading it.
func (m *Manager) indexFailed(iss *issuer, name string, s *storedCert) {
	st := m.st
	if st.storeErr != nil || iss == nil || s.LastFailure == nil || len(s.Chain) == 0 {
		return
	}
	var rec indexRecord
	if e := st.cache.get(name); e != nil && e.iss == iss {
		rec = indexRecord{e.notAfter.Unix(), e.renewAt.Unix(), e.notBefore.Unix(), 0}
	} else {
		leaf, err := x509.ParseCertificate(s.Chain[0])
		if err != nil {
			return
		}
		at, _ := planRenewal(name, leaf.SerialNumber.Bytes(), leaf.NotBefore, leaf.NotAfter, s.ARI, m.now())
		rec = indexRecord{leaf.NotAfter.Unix(), at.Unix(), leaf.NotBefore.Unix(), 0}
	}
	rec[3] = max(s.LastFailure.At.Unix(), rec[2]+1)
	st.index.put(indexRef{iss, bucketOf(name)}, name, rec)
}

// compactNames copies the names of rows, sliced from a bucket's JSON,
// into one string of their own, so that a snapshot keeps the names'
// bytes and not the whole text of the index (at a million names, 45 MB
// less).
func compactNames(rows []snapRow) {
	n := 0
	for i := range rows {
		n += len(rows[i].name)
	}
	var b strings.Builder
	b.Grow(n)
	for i := range rows {
		b.WriteString(rows[i].name)
	}
	all := b.String()
	off := 0
	for i := range rows {
		l := len(rows[i].name)
		rows[i].name = all[off : off+l]
		off += l
	}
}

// scanBucket reads the names of a bucket in the forms json.Marshal writes
// it (no spaces, names without escapes), calling add for each as it is
// read, with its name sliced from one string per bucket. ok is false when
// b is in any other form: the caller discards what add got and decodes b
// with encoding/json.
// A view of a million names reads a thousand buckets of a thousand names:
// this costs a tenth of encoding/json's map decoding.
func scanBucket(b []byte, add func(name string, rec indexRecord)) (ok bool) {
	s := string(b)
	i := 0
	lit := func(l string) bool {
		if strings.HasPrefix(s[i:], l) {
			i += len(l)
			return true
		}
		return false
	}
	num := func() (int64, bool) {
		j := i
		if j < len(s) && s[j] == '-' {
			j++
		}
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		n, err := strconv.ParseInt(s[i:j], 10, 64)
		if err != nil {
			return 0, false
		}
		i = j
		return n, true
	}
	str := func() (string, bool) {
		if !lit(`"`) {
			return "", false
		}
		j := strings.IndexByte(s[i:], '"')
		if j < 0 || strings.IndexByte(s[i:i+j], '\\') >= 0 {
			return "", false
		}
		v := s[i : i+j]
		i += j + 1
		return v, true
	}
	var (
		version int64
		names   bool
		count   int
	)
	if !lit(`{`) {
		return false
	}
	for first := true; !lit(`}`); first = false {
		if !first && !lit(`,`) {
			return false
		}
		key, ok := str()
		if !ok || !lit(`:`) {
			return false
		}
		switch key {
		case "version":
			if version, ok = num(); !ok {
				return false
			}
		case "issuer":
			if _, ok := str(); !ok {
				return false
			}
		case "names":
			if names || !lit(`{`) {
				return false
			}
			names = true
			for !lit(`}`) {
				if count > 0 && !lit(`,`) {
					return false
				}
				name, ok := str()
				if !ok || !lit(`:[`) {
					return false
				}
				var rec indexRecord
				for k := 0; ; k++ {
					n, ok := num()
					if !ok {
						return false
					}
					if k < len(rec) {
						rec[k] = n
					}
					if lit(`]`) {
						break
					}
					if !lit(`,`) {
						return false
					}
				}
				add(name, rec)
				count++
			}
		default:
			return false
		}
	}
	return i == len(s) && version == indexVersion
}

// indexComplete reports whether the start-up discovery has run to its
// end: every stored certificate it could read is in the index (or in its
// pending updates), and every one stored since by this Manager too, so a
// snapshot need not list the stored certificates. A Manager that only
// reads a storage (a command) never runs it.
func (m *Manager) indexComplete() bool { return m.st.indexComplete.Load() }

// IndexedIssuers returns the ACME directory URLs that the schedule index
// in store names, sorted: one List of index/ (1,024 keys per issuer at
// most) and one Load per issuer, whatever the number of certificates.
// Buckets written before the index named its issuer are skipped, as are
// issuers whose certificates were never indexed (imported and not yet
// served, or stored by an older version): [StoredIssuers] finds those, at
// the cost of listing every stored certificate.
func IndexedIssuers(ctx context.Context, store storage.Storage) ([]string, error) {
	keys, err := store.List(ctx, "index/")
	if err != nil {
		return nil, fmt.Errorf("autotls: listing the schedule index: %w", err)
	}
	seen := map[string]bool{}
	var out []string
	for _, k := range keys {
		seg, _, ok := strings.Cut(strings.TrimPrefix(k, "index/"), "/")
		if !ok || seen[seg] {
			continue
		}
		b, err := store.Load(ctx, k)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		var v struct {
			Issuer string `json:"issuer"`
		}
		if json.Unmarshal(b, &v) != nil || v.Issuer == "" || issuerKey(v.Issuer) != seg {
			continue
		}
		seen[seg] = true
		out = append(out, v.Issuer)
	}
	slices.Sort(out)
	return out, nil
}
