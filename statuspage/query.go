package statuspage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/record"
)

// Bounds of a page of certificates.
const (
	// MaxLimit is the largest page a Query (or ?limit=) may ask for.
	MaxLimit = 1000
	// MaxAttention is the number of revoked, expired and failing
	// certificates Status.Attention lists at most.
	MaxAttention = 10
	// reclassifyAfter is how far the clock may move before the states of
	// a snapshot's rows are judged again.
	reclassifyAfter = time.Minute
)

// ErrBadQuery is the error of [Handler.Query] (and the reason for a 400
// answer) for a state, limit or cursor that is not valid.
var ErrBadQuery = errors.New("statuspage: bad query")

// A Query selects a page of the certificates: those in State (every
// state when empty), in the page's order (names without a certificate
// first, then the soonest expiry, then by name), starting after the
// certificate After names, at most Limit of them. The page's query
// parameters are state, limit and after.
type Query struct {
	// State keeps only the certificates in this state.
	State State
	// Limit is the page size, at most MaxLimit. Zero means
	// Handler.MaxRows; negative (Handler.MaxRows negative only), every
	// certificate.
	Limit int
	// After is a cursor, Status.Next of the previous page: the
	// certificate's NotAfter in Unix seconds ("-" without one), a dot,
	// and its name, then, for a source's certificate with a tenant or a
	// serial, a slash and each, path-escaped ("1767225600.example.com",
	// "-.new.example.com", "1767225600.example.com/team-a/0a1b"). Empty
	// means from the first.
	After string
}

// parseQuery reads a Query from the page's query parameters.
func parseQuery(v url.Values) (Query, error) {
	q := Query{State: State(v.Get("state")), After: v.Get("after")}
	if !validState(q.State) {
		return q, fmt.Errorf("%w: unknown state %.64q", ErrBadQuery, q.State)
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			return q, fmt.Errorf("%w: limit %.64q is not between 1 and %d", ErrBadQuery, s, MaxLimit)
		}
		q.Limit = n
	}
	if _, err := parseCursor(q.After); err != nil {
		return q, err
	}
	return q, nil
}

func validState(s State) bool {
	switch s {
	case "", StateRevoked, StateExpired, StateFailing, StateExpiring, StatePending, StateOK:
		return true
	}
	return false
}

// parseCursor reads a cursor (see Query.After); its notAfter is 0 for a
// certificate without one.
func parseCursor(c string) (pageKey, error) {
	if c == "" {
		return pageKey{}, nil
	}
	base, rest, _ := strings.Cut(c, "/")
	t, name, ok := strings.Cut(base, ".")
	if !ok || name == "" {
		return pageKey{}, fmt.Errorf("%w: cursor %.64q", ErrBadQuery, c)
	}
	k := pageKey{name: name, base: base}
	if t != "-" {
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n == 0 {
			return pageKey{}, fmt.Errorf("%w: cursor %.64q", ErrBadQuery, c)
		}
		k.notAfter = n
	}
	if rest != "" {
		tenant, serial, ok := strings.Cut(rest, "/")
		var err1, err2 error
		k.tenant, err1 = url.PathUnescape(tenant)
		k.serial, err2 = url.PathUnescape(serial)
		if !ok || err1 != nil || err2 != nil {
			return pageKey{}, fmt.Errorf("%w: cursor %.64q", ErrBadQuery, c)
		}
	}
	return k, nil
}

// cursorOf is the cursor after c: its NotAfter and name, and, for a
// source's certificate with a tenant or a serial, both after a slash each
// (a relay may have issued the same name to two tenants in one second).
func cursorOf(c Certificate) string {
	base := "-." + c.Name
	if !c.NotAfter.IsZero() {
		base = strconv.FormatInt(c.NotAfter.Unix(), 10) + "." + c.Name
	}
	if c.Tenant == "" && c.Serial == "" {
		return base
	}
	return base + "/" + url.PathEscape(c.Tenant) + "/" + url.PathEscape(c.Serial)
}

// pageKey is where a certificate sorts in a page: no certificate first,
// then by NotAfter (Unix seconds), then by name, tenant and serial (a
// Manager's rows have neither, and sort first). base is a cursor's part
// that a Snapshot seeks (NotAfter and name).
type pageKey struct {
	notAfter             int64
	name, tenant, serial string
	base                 string
}

func keyOf(c *Certificate) pageKey {
	k := pageKey{name: c.Name, tenant: c.Tenant, serial: c.Serial}
	if !c.NotAfter.IsZero() {
		k.notAfter = c.NotAfter.Unix()
	}
	return k
}

func comparePageKeys(a, b pageKey) int {
	if (a.notAfter == 0) != (b.notAfter == 0) {
		if a.notAfter == 0 {
			return -1
		}
		return 1
	}
	return cmp.Or(cmp.Compare(a.notAfter, b.notAfter), strings.Compare(a.name, b.name),
		strings.Compare(a.tenant, b.tenant), strings.Compare(a.serial, b.serial))
}

// classified is a snapshot's rows judged: the positions of each state's
// rows, in the snapshot's order.
type classified struct {
	snap    *autotls.Snapshot
	at      time.Time
	byState map[State][]int32
}

// classes keeps the last classification of a Handler.
type classes struct {
	mu  sync.Mutex
	cur *classified
}

// classify judges every row of snap at now, once per snapshot (and again
// when the clock has moved by reclassifyAfter): the cost of a pass over
// the rows, shared by every view of that snapshot.
func (h *Handler) classify(snap *autotls.Snapshot, now time.Time) *classified {
	c := &h.classes
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.cur; cur != nil && cur.snap == snap && now.Sub(cur.at).Abs() < reclassifyAfter {
		return cur
	}
	cl := &classified{snap: snap, at: now, byState: map[State][]int32{}}
	var info record.Certificate
	for i := range snap.Len() {
		r := snap.Row(i)
		info = record.Certificate{
			NotBefore: r.NotBefore, NotAfter: r.NotAfter,
			RenewAt: r.RenewAt, RenewReason: r.RenewReason, RenewBy: r.RenewBy,
		}
		if !r.LastErrorAt.IsZero() {
			info.LastError = "failed"
		}
		s := stateOf(info, now)
		cl.byState[s] = append(cl.byState[s], int32(i))
	}
	c.cur = cl
	return cl
}

// counts returns the number of rows in each state.
func (cl *classified) counts() map[State]int {
	out := map[State]int{}
	for s, rows := range cl.byState {
		out[s] = len(rows)
	}
	return out
}

// managerPage is the part of a page that comes from the Manager's
// snapshot: positions of its rows, filtered by state, from a cursor.
type managerPage struct {
	snap *autotls.Snapshot
	// rows are the positions of the rows in the state (nil: every row).
	rows     []int32
	filtered bool
	next     int // index into rows (or the position) of the next row
}

func (p *managerPage) total() int {
	if p.filtered {
		return len(p.rows)
	}
	return p.snap.Len()
}

// seek starts the page after the cursor: after the row of its NotAfter
// and name, which sorts before a source's certificate of the same.
func (p *managerPage) seek(cursor string) error {
	k, err := parseCursor(cursor)
	if err != nil {
		return err
	}
	pos, err := p.snap.Seek(k.base)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadQuery, err)
	}
	if p.filtered {
		p.next, _ = slices.BinarySearch(p.rows, int32(pos))
	} else {
		p.next = pos
	}
	return nil
}

// peek returns the next row's position and key; ok is false at the end.
func (p *managerPage) peek() (pos int, key pageKey, ok bool) {
	if p.next >= p.total() {
		return 0, pageKey{}, false
	}
	pos = p.next
	if p.filtered {
		pos = int(p.rows[p.next])
	}
	r := p.snap.Row(pos)
	key.name = r.Name
	if !r.NotAfter.IsZero() {
		key.notAfter = r.NotAfter.Unix()
	}
	return pos, key, true
}

// pick is one row chosen for a page: from the Manager's snapshot (pos) or
// a certificate of a source (cert).
type pick struct {
	fromManager bool
	pos         int
	cert        Certificate
	// cursor continues after it, from the key it was picked by.
	cursor string
}

// choosePage chooses up to limit rows (negative: all) after the cursor from the
// Manager's part and the sources' certificates (sorted, filtered), the
// smaller key first, and reports whether more follow.
func choosePage(mp *managerPage, extra []Certificate, cursor string, limit int) ([]pick, bool) {
	start, _ := parseCursor(cursor)
	ei := 0
	if cursor != "" {
		ei = sort.Search(len(extra), func(i int) bool { return comparePageKeys(keyOf(&extra[i]), start) > 0 })
	}
	var out []pick
	for limit < 0 || len(out) < limit+1 {
		pos, mk, mok := 0, pageKey{}, false
		if mp != nil {
			pos, mk, mok = mp.peek()
		}
		eok := ei < len(extra)
		switch {
		case !mok && !eok:
			return out, false
		case mok && (!eok || comparePageKeys(mk, keyOf(&extra[ei])) <= 0):
			out = append(out, pick{fromManager: true, pos: pos, cursor: mp.snap.Cursor(pos)})
			mp.next++
		default:
			out = append(out, pick{cert: extra[ei], cursor: cursorOf(extra[ei])})
			ei++
		}
	}
	return out[:limit], true
}

// fromSummary describes a snapshot row whose certificate could not be
// loaded (deleted or unreadable since the snapshot).
func fromSummary(r autotls.CertificateSummary) record.Certificate {
	info := record.Certificate{
		Name: r.Name, Issuer: r.Issuer, NotBefore: r.NotBefore, NotAfter: r.NotAfter,
		RenewAt: r.RenewAt, RenewReason: r.RenewReason, RenewBy: r.RenewBy,
		Stored: r.Stored, InMemory: r.InMemory, Managed: r.Managed, LastErrorAt: r.LastErrorAt,
	}
	if !r.LastErrorAt.IsZero() {
		info.LastError = "failed (the error is recorded with the certificate, which could not be read now)"
	}
	return info
}

// load describes the picked rows: those of the Manager loaded at once
// (one CertificatesOf call), the sources' as they are.
func (h *Handler) load(ctx context.Context, snap *autotls.Snapshot, picks []pick, now time.Time) ([]Certificate, error) {
	var names []string
	for _, p := range picks {
		if p.fromManager {
			names = append(names, snap.Name(p.pos))
		}
	}
	byName := map[string]record.Certificate{}
	var err error
	if len(names) > 0 {
		var infos []record.Certificate
		infos, err = h.Manager.CertificatesOf(ctx, names...)
		for _, info := range infos {
			byName[info.Name] = info
		}
	}
	out := make([]Certificate, 0, len(picks))
	for _, p := range picks {
		if !p.fromManager {
			out = append(out, p.cert)
			continue
		}
		info, ok := byName[snap.Name(p.pos)]
		if !ok {
			info = fromSummary(snap.Row(p.pos))
		}
		out = append(out, certificateOf(info, now))
	}
	return out, err
}
