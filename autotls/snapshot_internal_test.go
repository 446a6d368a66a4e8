package autotls

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/storage"
)

// prefixLoads counts Loads and Lists by the key's first segment.
type prefixLoads struct {
	storage.Storage
	mu    sync.Mutex
	loads map[string]int
	lists map[string]int
}

func newPrefixLoads(s storage.Storage) *prefixLoads {
	return &prefixLoads{Storage: s, loads: map[string]int{}, lists: map[string]int{}}
}

func (p *prefixLoads) Load(ctx context.Context, key string) ([]byte, error) {
	p.note(p.loads, key)
	return p.Storage.Load(ctx, key)
}

func (p *prefixLoads) List(ctx context.Context, prefix string) ([]string, error) {
	p.note(p.lists, prefix)
	return p.Storage.List(ctx, prefix)
}

// note counts key under its first segment in counts (loads or lists).
func (p *prefixLoads) note(counts map[string]int, key string) {
	seg, _, _ := strings.Cut(key, "/")
	p.mu.Lock()
	counts[seg]++
	p.mu.Unlock()
}

func (p *prefixLoads) count(seg string) (loads, lists int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.loads[seg], p.lists[seg]
}

// writeIndex stores index records for names of dir, as a Manager's flush
// writes them.
func writeIndex(t testing.TB, store storage.Storage, dir string, recs map[string]indexRecord) {
	t.Helper()
	iss := &issuer{url: dir, key: issuerKey(dir)}
	buckets := map[int]map[string]indexRecord{}
	for name, r := range recs {
		b := bucketOf(name)
		if buckets[b] == nil {
			buckets[b] = map[string]indexRecord{}
		}
		buckets[b][name] = r
	}
	for b, names := range buckets {
		v, err := json.Marshal(indexValue{Version: indexVersion, Issuer: dir, Names: names})
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Store(context.Background(), (indexRef{iss, b}).key(), v); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSnapshotFromIndex: a snapshot lists the names of the index without
// loading their certificates, loads only the stored certificate the index
// does not know, adds the managed name without a certificate and the
// failures (stored in the index, and remembered in memory), and orders
// the rows by expiry, names without a certificate first; its cursors
// continue after a row, in it and in a later snapshot.
func TestSnapshotFromIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ca := newTestCA(t)
	const dir = "https://ca.test/directory"
	mem := storage.NewMemory()
	now := time.Now().Truncate(time.Second)
	day := int64(24 * 3600)
	writeIndex(t, mem, dir, map[string]indexRecord{
		"b.example.com":      {now.Unix() + 30*day, now.Unix() + 20*day, now.Unix() - 60*day, 0},
		"a.example.com":      {now.Unix() + 30*day, now.Unix() + 20*day, now.Unix() - 60*day, 0},
		"late.example.com":   {now.Unix() + 80*day, now.Unix() + 50*day, now.Unix() - 10*day, 0},
		"failed.example.com": {now.Unix() + 10*day, now.Unix() + 1*day, now.Unix() - 80*day, now.Unix() - 3600},
		"old.example.com":    {now.Unix() + 5*day, now.Unix() + 1*day, 0, 0}, // written by an older version
	})
	chain, key := ca.issue(t, now.Add(40*24*time.Hour), "unindexed.example.com")
	if err := StoreForTest(ctx, mem, dir, "unindexed.example.com", chain, key); err != nil {
		t.Fatal(err)
	}
	store := newPrefixLoads(mem)
	m := &Manager{Issuers: []Issuer{{DirectoryURL: dir}}, Storage: store}
	defer m.Close()
	st := m.state()
	st.managed.add([]string{"pending.example.com", "late.example.com"})
	m.recordFailure("pending.example.com", errors.New("acme: refused"), now, 0)

	s, err := m.Snapshot(ctx)
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if loads, _ := store.count("certificates"); loads != 1 {
		t.Errorf("%d certificates loaded, want 1 (the one the index does not know)", loads)
	}
	var got []string
	for i := range s.Len() {
		got = append(got, s.Name(i))
	}
	want := []string{"pending.example.com", "old.example.com", "failed.example.com", "a.example.com", "b.example.com", "unindexed.example.com", "late.example.com"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("rows %v, want %v", got, want)
	}
	rows := map[string]CertificateSummary{}
	for i := range s.Len() {
		rows[s.Name(i)] = s.Row(i)
	}
	if r := rows["pending.example.com"]; !r.Managed || !r.NotAfter.IsZero() || r.LastErrorAt.IsZero() || r.Issuer != dir {
		t.Errorf("pending: %+v, want managed, no certificate, failing", r)
	}
	if r := rows["failed.example.com"]; r.LastErrorAt.Unix() != now.Unix()-3600 || !r.Stored || r.InMemory {
		t.Errorf("failed: %+v, want the failure the index records", r)
	}
	if r := rows["late.example.com"]; !r.Managed || r.NotAfter.Unix() != now.Unix()+80*day || !r.NotBefore.Equal(now.Add(-10*24*time.Hour)) || !r.LastErrorAt.IsZero() {
		t.Errorf("late: %+v, want managed, from the index", r)
	}
	if r := rows["unindexed.example.com"]; r.RenewAt.IsZero() || r.RenewReason != ReasonSchedule || !r.Stored {
		t.Errorf("unindexed: %+v, want loaded and planned", r)
	}
	if r := rows["old.example.com"]; !r.NotBefore.IsZero() {
		t.Errorf("old: %+v, want no NotBefore (an older index)", r)
	}

	for i := range s.Len() {
		j, err := s.Seek(s.Cursor(i))
		if err != nil || j != i+1 {
			t.Errorf("Seek(Cursor(%d)) = %d, %v; want %d", i, j, err, i+1)
		}
	}
	if j, err := s.Seek(""); j != 0 || err != nil {
		t.Errorf("Seek(\"\") = %d, %v", j, err)
	}
	for _, bad := range []string{"x", "12", "abc.name", "0.name", "-."} {
		if _, err := s.Seek(bad); !errors.Is(err, ErrBadCursor) {
			t.Errorf("Seek(%q): %v, want ErrBadCursor", bad, err)
		}
	}
	cursor := s.Cursor(3) // after a.example.com

	// A later snapshot: a.example.com renewed (it moves to the end); the
	// cursor still continues with what sorted after it.
	writeIndex(t, mem, dir, map[string]indexRecord{
		"a.example.com": {now.Unix() + 90*day, now.Unix() + 60*day, now.Unix(), 0},
	})
	s2, err := m.RefreshSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Snapshot(ctx); got != s2 {
		t.Error("Snapshot after RefreshSnapshot did not return the refreshed one")
	}
	j, err := s2.Seek(cursor)
	if err != nil || s2.Name(j) != "b.example.com" {
		t.Errorf("cursor in the later snapshot at %d (%v), want b.example.com", j, err)
	}
	if s2.Name(s2.Len()-1) != "a.example.com" {
		t.Errorf("last row %s, want the renewed a.example.com", s2.Name(s2.Len()-1))
	}
}

// TestSnapshotShared: the callers that arrive while the first snapshot
// is built share that build; a call within SnapshotMaxAge gets the same
// snapshot without reading storage; a later call gets it still and
// starts one background build; a call long after waits for a new one.
func TestSnapshotShared(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const dir = "https://ca.test/directory"
	mem := storage.NewMemory()
	now := time.Now().Unix()
	writeIndex(t, mem, dir, map[string]indexRecord{"a.example.com": {now + 1000, now + 500, now - 1000, 0}})
	store := newPrefixLoads(mem)
	m := &Manager{Issuers: []Issuer{{DirectoryURL: dir}}, Storage: store}
	defer m.Close()

	var wg sync.WaitGroup
	got := make([]*Snapshot, 16)
	for i := range got {
		wg.Go(func() {
			s, err := m.Snapshot(ctx)
			if err != nil {
				t.Error(err)
			}
			got[i] = s
		})
	}
	wg.Wait()
	for i, s := range got {
		if s != got[0] {
			t.Fatalf("caller %d got another snapshot", i)
		}
	}
	if _, lists := store.count("index"); lists != 1 {
		t.Errorf("%d builds for 16 concurrent callers, want 1", lists)
	}
	if s, _ := m.Snapshot(ctx); s != got[0] {
		t.Error("a call within SnapshotMaxAge got another snapshot")
	}
	// Age the snapshot: the next call gets it and starts one build.
	st := m.state()
	st.views.mu.Lock()
	st.views.cur.built = time.Now().Add(-2 * SnapshotMaxAge)
	st.views.mu.Unlock()
	if s, _ := m.Snapshot(ctx); s != got[0] {
		t.Error("a stale snapshot was not returned while the next is built")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st.views.mu.Lock()
		cur := st.views.cur
		st.views.mu.Unlock()
		if cur != got[0] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no background build replaced the stale snapshot")
		}
		time.Sleep(time.Millisecond)
	}
	if _, lists := store.count("index"); lists != 2 {
		t.Errorf("%d builds, want 2", lists)
	}
	// A snapshot older than snapshotStale is not shown while the next
	// is built: the call waits for the next.
	st.views.mu.Lock()
	old := st.views.cur
	old.built = time.Now().Add(-2 * snapshotStale)
	st.views.mu.Unlock()
	if s, err := m.Snapshot(ctx); s == old || err != nil {
		t.Errorf("a snapshot older than snapshotStale was returned (%v)", err)
	}
	if _, lists := store.count("index"); lists != 3 {
		t.Errorf("%d builds, want 3", lists)
	}
}

// TestSnapshotFailureIndexed: a renewal failure recorded with the stored
// certificate goes to the index, so that a Manager that only reads the
// storage (a command) sees the name failing without loading it; a renewal
// clears it.
func TestSnapshotFailureIndexed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ca := newTestCA(t)
	const dir = "https://ca.test/directory"
	store := storage.NewMemory()
	now := time.Now()
	chain, key := ca.issue(t, now.Add(40*24*time.Hour), "fail.example.com")
	if err := StoreForTest(ctx, store, dir, "fail.example.com", chain, key); err != nil {
		t.Fatal(err)
	}
	m := &Manager{Issuers: []Issuer{{DirectoryURL: dir}}, Storage: store}
	defer m.Close()
	m.storeFailure(ctx, m.state().primary(), "fail.example.com", errors.New("acme: the CA is down"))
	if err := m.flushIndex(ctx); err != nil {
		t.Fatal(err)
	}

	counting := newPrefixLoads(store)
	reader := &Manager{Issuers: []Issuer{{DirectoryURL: dir}}, Storage: counting}
	defer reader.Close()
	s, err := reader.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 1 || s.Row(0).LastErrorAt.IsZero() {
		t.Fatalf("rows %d, first %+v; want the failing name", s.Len(), s.Row(0))
	}
	if loads, _ := counting.count("certificates"); loads != 0 {
		t.Errorf("%d certificates loaded, want none (the index knows it)", loads)
	}
	infos, err := reader.CertificatesOf(ctx, "fail.example.com", "unknown.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || !strings.Contains(infos[0].LastError, "the CA is down") {
		t.Fatalf("CertificatesOf: %+v, want the one name with its stored failure", infos)
	}
	if loads, _ := counting.count("certificates"); loads != 2 {
		t.Errorf("CertificatesOf loaded %d values, want 2 (one per name)", loads)
	}
}

// BenchmarkSnapshot builds a Snapshot of n names from the index (memory
// storage; no certificate loaded): the cost of one build, which a view
// shares with every view within SnapshotMaxAge (or 20 times the build).
func BenchmarkSnapshot(b *testing.B) {
	for _, n := range []int{1000, 10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("names=%d", n), func(b *testing.B) {
			const dir = "https://ca.invalid/directory"
			store := storage.NewMemory()
			recs := make(map[string]indexRecord, n)
			now := time.Now().Unix()
			for i := range n {
				recs[fmt.Sprintf("host%d.bench.example.com", i)] = indexRecord{now + int64(i%(90*24*3600)), now + 3600, now - 3600, 0}
			}
			writeIndex(b, store, dir, recs)
			recs = nil
			runtime.GC()
			m := &Manager{Issuers: []Issuer{{DirectoryURL: dir}}, Storage: store}
			defer m.Close()
			for b.Loop() {
				s, err := m.RefreshSnapshot(context.Background())
				if err != nil || s.Len() != n {
					b.Fatalf("%d rows, %v; want %d", s.Len(), err, n)
				}
			}
		})
	}
}

// TestScanBucket: the fast reader of index buckets reads what
// encoding/json reads from the forms json.Marshal writes (the index's
// struct, a map with its keys sorted, records of two elements from an
// older version), and declines every other form, which the caller then
// decodes with encoding/json.
func TestScanBucket(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[string]indexRecord // nil: declined
	}{
		{"struct order", `{"version":1,"issuer":"https://ca.test/dir","names":{"a.example.com":[10,5,1,0],"b.example.com":[20,15,2,7]}}`,
			map[string]indexRecord{"a.example.com": {10, 5, 1, 0}, "b.example.com": {20, 15, 2, 7}}},
		{"sorted keys", `{"issuer":"https://ca.test/dir","names":{"a.example.com":[10,5,1,0]},"version":1}`,
			map[string]indexRecord{"a.example.com": {10, 5, 1, 0}}},
		{"older records", `{"version":1,"names":{"a.example.com":[10,5]}}`, map[string]indexRecord{"a.example.com": {10, 5, 0, 0}}},
		{"longer records", `{"version":1,"names":{"a.example.com":[10,5,1,0,9]}}`, map[string]indexRecord{"a.example.com": {10, 5, 1, 0}}},
		{"no names", `{"version":1,"names":{}}`, map[string]indexRecord{}},
		{"escaped name", `{"version":1,"names":{"a\u002eexample.com":[10,5]}}`, nil},
		{"spaces", `{"version": 1, "names": {}}`, nil},
		{"other version", `{"version":2,"names":{}}`, nil},
		{"unknown key", `{"version":1,"names":{},"more":1}`, nil},
		{"trailing bytes", `{"version":1,"names":{}}x`, nil},
		{"truncated", `{"version":1,"names":{"a.example.com":[10,`, nil},
		{"not json", `garbage`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := map[string]indexRecord{}
			ok := scanBucket([]byte(tc.in), func(name string, r indexRecord) { got[name] = r })
			if ok != (tc.want != nil) {
				t.Fatalf("ok = %v, want %v", ok, tc.want != nil)
			}
			if !ok {
				return
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			var v indexValue
			if err := json.Unmarshal([]byte(tc.in), &v); err != nil || fmt.Sprint(v.Names) != fmt.Sprint(tc.want) && len(tc.want) > 0 {
				t.Errorf("encoding/json reads %v (%v), the scanner %v", v.Names, err, got)
			}
		})
	}
}

// TestSortRows: rows sort by expiry (none first), then by name, whatever
// their order before.
func TestSortRows(t *testing.T) {
	var rows []snapRow
	for i := range 500 {
		rows = append(rows, snapRow{name: fmt.Sprintf("n%03d", (i*7919)%500), notAfter: int64((i * 31) % 17)})
	}
	got := sortRows(rows)
	for i := 1; i < len(got); i++ {
		if compareRows(got[i-1], got[i]) > 0 {
			t.Fatalf("rows %d and %d out of order: %+v, %+v", i-1, i, got[i-1], got[i])
		}
	}
	seen := map[string]bool{}
	for _, r := range got {
		seen[r.name] = true
	}
	if len(seen) != 500 {
		t.Errorf("%d distinct rows after sorting, want 500", len(seen))
	}
}

// TestIndexKeepsNewerCertificate: a node's pending record of an older
// certificate (its failed renewal, flushed late) does not replace the
// record another node wrote of the newer certificate that renewal got.
func TestIndexKeepsNewerCertificate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const dir = "https://ca.test/directory"
	store := storage.NewMemory()
	now := time.Now().Unix()
	newer := indexRecord{now + 90*86400, now + 60*86400, now - 60, 0}
	writeIndex(t, store, dir, map[string]indexRecord{"a.example.com": newer})
	m := &Manager{Issuers: []Issuer{{DirectoryURL: dir}}, Storage: store}
	defer m.Close()
	iss := m.state().primary()
	ref := indexRef{iss, bucketOf("a.example.com")}
	older := indexRecord{now + 10*86400, now, now - 80*86400, now - 3600}
	// A name of the same bucket with no record yet: its record is written.
	other := ""
	for i := 0; other == ""; i++ {
		if n := fmt.Sprintf("n%d.example.com", i); bucketOf(n) == ref.bucket {
			other = n
		}
	}
	if err := m.writeBucket(ctx, store, ref, map[string]indexRecord{"a.example.com": older, other: older}); err != nil {
		t.Fatal(err)
	}
	v, err := readBucket(ctx, store, ref)
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Names["a.example.com"]; got != newer {
		t.Errorf("a.example.com: %v, want the newer certificate's %v kept", got, newer)
	}
	if got := v.Names[other]; got != older {
		t.Errorf("%s: %v, want %v written", other, got, older)
	}
}
