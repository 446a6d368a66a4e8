package autotls_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tlsmint/tlsmint/audit"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/storage"
	"github.com/tlsmint/tlsmint/storage/postgres"
)

// fleetScale sizes a run of three Managers sharing one PostgreSQL.
type fleetScale struct {
	stored   int // stored certificates, not due for renewal
	due      int // stored certificates due for renewal at once
	fresh    int // names with nothing stored: ordered
	capacity int // each node's CacheCapacity
}

// fleetResult is what a fleet run measured, for the benchmark to report.
type fleetResult struct {
	manage       time.Duration // until every node's Manage returned
	renewals     time.Duration // until every due name was renewed
	heapManaged  int64         // heap of the three nodes after Manage and the renewals
	heapServed   int64         // … after each served its share
	cached       [3]int
	passes       [3]int // serving passes until one found every name in memory
	renewedBy    [3]int
	orders       int
	valuesBytes  int64 // pg_total_relation_size of the values table
	valuesHeap   int64 // pg_relation_size: the table alone
	valuesIndex  int64 // pg_indexes_size: its primary key
	caCertBytes  int64 // average value of a certificate from the CA (with its chain)
	certRows     int64
	certBytes    int64 // the certificate values' bytes (octet_length)
	indexRows    int64
	lockRows     int64
	backoffRows  int64
	journalBytes int64 // pg_total_relation_size of the journal table
	journalRows  int64
	journalTop   string // the most frequent kinds of journal rows
}

// fleetLog counts, per name, the certificates one node obtained and
// renewed itself.
type fleetLog struct {
	mu       sync.Mutex
	obtained map[string]int
	renewed  map[string]int
}

func (l *fleetLog) on(e autotls.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch e.Type {
	case autotls.EventObtained:
		l.obtained[e.Name]++
	case autotls.EventRenewed:
		l.renewed[e.Name]++
	}
}

func (l *fleetLog) counts(name string) (obtained, renewed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.obtained[name], l.renewed[name]
}

func (l *fleetLog) totalRenewed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.renewed {
		n += c
	}
	return n
}

// copyToPostgres writes every value of src into the values table of a
// PostgreSQL store with table prefix prefix, with one COPY.
func copyToPostgres(tb testing.TB, dsn, prefix string, src storage.Storage) int64 {
	tb.Helper()
	ctx := context.Background()
	keys, err := src.List(ctx, "")
	if err != nil {
		tb.Fatal(err)
	}
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close(ctx)
	now := time.Now()
	i := 0
	n, err := c.CopyFrom(ctx, pgx.Identifier{prefix + "values"}, []string{"key", "value", "modified"}, pgx.CopyFromFunc(func() ([]any, error) {
		if i == len(keys) {
			return nil, nil
		}
		v, err := src.Load(ctx, keys[i])
		if err != nil {
			return nil, err
		}
		i++
		return []any{keys[i-1], v, now}, nil
	}))
	if err != nil {
		tb.Fatalf("COPY into PostgreSQL: %v", err)
	}
	return n
}

// runFleet runs three Managers on one PostgreSQL (a fresh table prefix,
// dropped at the end) against the in-process Pebble. Every node manages
// every name at once; then each serves the handshakes of its own third of
// the names (twice). It checks that the CA saw one order per name without
// a certificate and one per due certificate (whichever node got to it),
// that the renewals were shared by the nodes, that each node keeps in
// memory the names it served and at most CacheCapacity certificates, and
// that the stored certificates' renewals spread over their windows, the
// same on every node.
func runFleet(tb testing.TB, dsn string, sc fleetScale) fleetResult {
	tb.Helper()
	var res fleetResult
	e := newEnv(tb, testpebble.Options{})
	prefix := fleetPrefix(tb, dsn)
	cfg := postgres.Config{DSN: withPoolSize(dsn, 8), TablePrefix: prefix, LockPollInterval: 20 * time.Millisecond}
	stores := [3]*postgres.Storage{openPostgres(tb, cfg)}

	// The stored certificates, signed by a local CA and loaded with COPY.
	f := newFixture(tb)
	mem := storage.NewMemory()
	now := time.Now()
	var stored, due, fresh []string
	for i := range sc.stored {
		name := fmt.Sprintf("s%d.fleet.example.com", i)
		if err := autotls.StoreForTest(context.Background(), mem, e.ca.DirectoryURL(), name, f.leafPEM(tb, name, int64(i+2)), f.leafKy); err != nil {
			tb.Fatal(err)
		}
		stored = append(stored, name)
	}
	for i := range sc.due {
		// A third of a 3-day lifetime is left: due now.
		name := fmt.Sprintf("d%d.fleet.example.com", i)
		pem := f.leafPEMValid(tb, name, int64(sc.stored+i+2), now.Add(-2*24*time.Hour), now.Add(24*time.Hour))
		if err := autotls.StoreForTest(context.Background(), mem, e.ca.DirectoryURL(), name, pem, f.leafKy); err != nil {
			tb.Fatal(err)
		}
		due = append(due, name)
	}
	for i := range sc.fresh {
		fresh = append(fresh, fmt.Sprintf("n%d.fleet.example.com", i))
	}
	copyToPostgres(tb, dsn, prefix, mem)
	all := append(append(append([]string{}, stored...), due...), fresh...)

	runtime.GC()
	heap0 := liveHeap()
	var nodes [3]*autotls.Manager
	var logs [3]*fleetLog
	var trails [3]*audit.Log
	for i := range nodes {
		if stores[i] == nil {
			stores[i] = openPostgres(tb, cfg)
		}
		logs[i] = &fleetLog{obtained: map[string]int{}, renewed: map[string]int{}}
		// Each node keeps its audit trail in the shared journal table.
		trails[i] = &audit.Log{Storage: stores[i], Node: fmt.Sprintf("node%d", i+1)}
		tb.Cleanup(func() { trails[i].Close() })
		nodes[i] = e.manager(tb, stores[i], func(m *autotls.Manager) {
			m.Hosts = nil
			m.CacheCapacity = sc.capacity
			m.MaxBackgroundOrders = 6
			m.OnEvent = logs[i].on
			m.AuditLog = trails[i]
		})
		// The nodes' clock stands still: what is due at the start (the
		// due renewals, the ARI polls right after each issuance) runs,
		// and nothing comes due later — in particular not the ARI poll
		// of each loaded certificate a minute after its load, which
		// would load evicted certificates into memory again while the
		// test looks at what each node keeps.
		autotls.SetClockForTest(nodes[i], func() time.Time { return now })
		// With the clock still, renewals found overdue are not spread
		// over the next hour (it never comes): they run at once.
		autotls.SetCatchUpForTest(nodes[i], 0)
		// Nor does the minute of the issuers' order bounds pass: the
		// bounds are not what this test is about.
		autotls.UnboundedForTest(nodes[i])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	errs := make(chan error, len(nodes))
	for _, m := range nodes {
		go func() { errs <- m.Manage(ctx, all...) }()
	}
	for i := range nodes {
		if err := <-errs; err != nil {
			tb.Fatalf("Manage on one node (%d of %d): %v", i+1, len(nodes), clipErr(err))
		}
	}
	res.manage = time.Since(start)

	// The due certificates are renewed by whichever node gets to each
	// first; the others load what it stored.
	deadline := time.Now().Add(5 * time.Minute)
	for {
		n := 0
		for _, l := range logs {
			n += l.totalRenewed()
		}
		if n >= len(due) {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d due certificates renewed within 5 minutes", n, len(due))
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.renewals = time.Since(start)
	for _, name := range fresh {
		total := 0
		for _, l := range logs {
			o, _ := l.counts(name)
			total += o
		}
		if total != 1 {
			tb.Errorf("%s obtained %d times across the fleet, want once", name, total)
		}
	}
	for _, name := range due {
		total := 0
		for i, l := range logs {
			_, r := l.counts(name)
			total += r
			res.renewedBy[i] += r
		}
		if total != 1 {
			tb.Errorf("%s renewed %d times across the fleet, want once", name, total)
		}
	}
	res.orders = e.ca.Requests("newOrder")
	if want := len(fresh) + len(due); res.orders != want {
		tb.Errorf("got %d newOrder requests for %d names without a certificate and %d due ones on %d nodes, want %d", res.orders, len(fresh), len(due), len(nodes), want)
	}
	busy := 0
	for _, n := range res.renewedBy {
		if n > 0 {
			busy++
		}
	}
	if len(due) >= 30 && busy < 2 {
		tb.Errorf("renewals per node: %v; want them shared by at least two nodes", res.renewedBy)
	}
	res.heapManaged = int64(liveHeap()) - int64(heap0)

	// Each node serves its own third of the names (a load balancer with
	// sticky routing), pass after pass until a pass evicts nothing and
	// finds them all in memory (CLOCK needs a few passes to push out what
	// Manage loaded): it then keeps those in memory, and little else.
	var wg sync.WaitGroup
	var missing [3]int
	for i, m := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pass := 1; ; pass++ {
				_, before := autotls.CacheStatsForTest(m)
				for j := i; j < len(all); j += len(nodes) {
					if _, err := m.GetCertificate(hello(all[j])); err != nil {
						tb.Errorf("node %d, %s: %v", i+1, all[j], err)
						return
					}
				}
				missing[i] = 0
				for j := i; j < len(all); j += len(nodes) {
					if !autotls.CachedForTest(m, all[j]) {
						missing[i]++
					}
				}
				if _, after := autotls.CacheStatsForTest(m); after == before && missing[i] == 0 {
					res.passes[i] = pass
					return
				}
				if pass == 40 {
					tb.Errorf("node %d: its names still evict one another after %d passes (%d of them not in memory)", i+1, pass, missing[i])
					return
				}
			}
		}()
	}
	wg.Wait()
	res.heapServed = int64(liveHeap()) - int64(heap0)
	for i, m := range nodes {
		size, _ := autotls.CacheStatsForTest(m)
		res.cached[i] = size
		if size > sc.capacity {
			tb.Errorf("node %d keeps %d certificates in memory, want at most its CacheCapacity %d", i+1, size, sc.capacity)
		}
	}
	if got := e.ca.Requests("newOrder"); got != res.orders {
		tb.Errorf("%d more newOrder requests while the nodes served their names, want none", got-res.orders)
	}
	checkSpread(tb, nodes[0], stored)
	for _, l := range trails {
		if err := l.Flush(context.Background()); err != nil {
			tb.Errorf("flushing an audit trail: %v", err)
		}
	}
	measurePostgres(tb, dsn, prefix, &res)
	return res
}

// checkSpread checks that the renewals of the stored certificates (all
// issued within seconds, with the same lifetime) are planned all over
// their renewal window rather than at one moment: the planned times span
// at least half of the Manager's window of a 90-day certificate (nine
// days), and each tenth of their span holds between 5 and 15 % of them.
func checkSpread(tb testing.TB, m *autotls.Manager, names []string) {
	tb.Helper()
	if len(names) < 500 {
		return
	}
	infos, err := m.Certificates(context.Background())
	if err != nil {
		tb.Fatalf("Certificates: %v", err)
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	var at []time.Time
	for _, info := range infos {
		if want[info.Name] {
			at = append(at, info.RenewAt)
		}
	}
	if len(at) != len(names) {
		tb.Fatalf("Certificates lists %d of the %d stored names", len(at), len(names))
	}
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	span := at[len(at)-1].Sub(at[0])
	if span < 4*24*time.Hour+12*time.Hour {
		tb.Errorf("the renewals of %d certificates are planned within %v of one another, want them spread over days", len(at), span)
		return
	}
	var tenths [10]int
	for _, t := range at {
		tenths[min(int(10*t.Sub(at[0])/span), 9)]++
	}
	for i, n := range tenths {
		if n*20 < len(at) || n*100 > 15*len(at) {
			tb.Errorf("the renewals planned in tenth %d of their %v span: %d of %d (all tenths: %v), want 5–15 %%", i+1, span.Round(time.Hour), n, len(at), tenths)
		}
	}
}

// measurePostgres reads the sizes of the fleet's tables.
func measurePostgres(tb testing.TB, dsn, prefix string, res *fleetResult) {
	tb.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close(ctx)
	values, locks, journal := pgx.Identifier{prefix + "values"}.Sanitize(), pgx.Identifier{prefix + "locks"}.Sanitize(), pgx.Identifier{prefix + "journal"}.Sanitize()
	rows := []struct {
		sql string
		dst *int64
	}{
		{"SELECT pg_total_relation_size('" + values + "')", &res.valuesBytes},
		{"SELECT pg_relation_size('" + values + "')", &res.valuesHeap},
		{"SELECT pg_indexes_size('" + values + "')", &res.valuesIndex},
		{"SELECT coalesce(avg(octet_length(value)), 0)::bigint FROM " + values + " WHERE key ~ '^certificates/[^/]+/[nd][0-9]+[.]'", &res.caCertBytes},
		{"SELECT count(*), coalesce(sum(octet_length(value)), 0) FROM " + values + " WHERE key LIKE 'certificates/%'", nil},
		{"SELECT count(*) FROM " + values + " WHERE key LIKE 'index/%'", &res.indexRows},
		{"SELECT count(*) FROM " + values + " WHERE key LIKE 'backoff/%'", &res.backoffRows},
		{"SELECT count(*) FROM " + locks, &res.lockRows},
		{"SELECT pg_total_relation_size('" + journal + "')", &res.journalBytes},
		{"SELECT count(*) FROM " + journal, &res.journalRows},
	}
	top, err := c.Query(ctx, "SELECT (data->>'kind') || ' ' || (data->>'operation'), count(*) FROM "+journal+" GROUP BY 1 ORDER BY 2 DESC LIMIT 6")
	if err != nil {
		tb.Fatal(err)
	}
	for top.Next() {
		var what string
		var n int64
		if err := top.Scan(&what, &n); err != nil {
			tb.Fatal(err)
		}
		res.journalTop += fmt.Sprintf("%s: %d; ", what, n)
	}
	top.Close()
	for _, r := range rows {
		var err error
		if r.dst == nil {
			err = c.QueryRow(ctx, r.sql).Scan(&res.certRows, &res.certBytes)
		} else {
			err = c.QueryRow(ctx, r.sql).Scan(r.dst)
		}
		if err != nil {
			tb.Fatalf("%s: %v", r.sql, err)
		}
	}
}

// Three Managers share PostgreSQL and 3,200 names (3,000 stored, 100
// stored and due for renewal, 100 to order), each managing all of them
// with a CacheCapacity of 1,200 and serving handshakes for a third: each
// name is ordered or renewed once across the fleet, the renewals are
// shared, and each node keeps in memory the names it serves.
func TestFleetPostgresThousands(t *testing.T) {
	dsn := fleetDSN(t)
	t.Parallel()
	sc := fleetScale{stored: 3000, due: 100, fresh: 100, capacity: 1200}
	if raceEnabled || testing.Short() {
		sc = fleetScale{stored: 3000, due: 60, fresh: 60, capacity: 1200}
	}
	res := runFleet(t, dsn, sc)
	names := sc.stored + sc.due + sc.fresh
	t.Logf("%d names on 3 nodes: Manage %v, renewals done after %v; renewals per node %v; cached %v after %v passes; %d certificate rows of %.0f B on average (%d B from the CA, with its chain), values table %.0f B per name (%.0f B table, %.0f B primary key); audit journal %d rows, %d B (%.0f B per row, %.1f rows per order: %s)",
		names, res.manage.Round(time.Millisecond), res.renewals.Round(time.Millisecond), res.renewedBy, res.cached, res.passes,
		res.certRows, float64(res.certBytes)/float64(max(res.certRows, 1)), res.caCertBytes, float64(res.valuesBytes)/float64(names), float64(res.valuesHeap)/float64(names), float64(res.valuesIndex)/float64(names),
		res.journalRows, res.journalBytes, float64(res.journalBytes)/float64(max(res.journalRows, 1)), float64(res.journalRows)/float64(max(res.orders, 1)), res.journalTop)
	if res.certRows != int64(names) {
		t.Errorf("%d certificate rows for %d names, want one each", res.certRows, names)
	}
}

// BenchmarkFleetPostgres is TestFleetPostgresThousands at 100,000 names
// (99,400 stored and loaded into PostgreSQL with one COPY, 300 of them
// due for renewal, 300 to order) with a CacheCapacity of 37,000 per node
// (a third of the names plus 11 %). It is not run in CI. Per node it
// reports the live heap per managed name after Manage (every name
// managed, planned and loaded once) and after serving its third, the
// certificates in memory, the renewals it did; and the PostgreSQL bytes
// per name.
func BenchmarkFleetPostgres(b *testing.B) {
	dsn := fleetDSN(b)
	sc := fleetScale{stored: 99400, due: 300, fresh: 300, capacity: 37000}
	n := sc.stored + sc.due + sc.fresh
	for b.Loop() {
		res := runFleet(b, dsn, sc)
		b.ReportMetric(res.manage.Seconds(), "manage-s")
		b.ReportMetric(float64(res.heapManaged)/3/float64(n), "heap-B/name/node-managed")
		b.ReportMetric(float64(res.heapServed)/3/float64(n), "heap-B/name/node-served")
		b.ReportMetric(float64(res.heapServed)/3/(1<<20), "heap-MiB/node-served")
		b.ReportMetric(float64(res.valuesBytes)/float64(n), "pg-values-B/name")
		b.ReportMetric(float64(res.certBytes)/float64(max(res.certRows, 1)), "cert-value-B")
		b.ReportMetric(float64(res.caCertBytes), "ca-cert-value-B")
		b.ReportMetric(float64(res.valuesHeap)/float64(n), "pg-heap-B/name")
		b.ReportMetric(float64(res.valuesIndex)/float64(n), "pg-index-B/name")
		b.ReportMetric(float64(res.orders), "orders")
		b.Logf("renewals per node %v; cached %v after %v passes; rows: %d certificates, %d index buckets, %d backoff, %d locks; journal %d rows, %d B (%s); values %d B (table %d B, primary key %d B)",
			res.renewedBy, res.cached, res.passes, res.certRows, res.indexRows, res.backoffRows, res.lockRows, res.journalRows, res.journalBytes, res.journalTop,
			res.valuesBytes, res.valuesHeap, res.valuesIndex)
	}
}
