package audit

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/storage"
)

// ctxT is testsetup.Context, under the name the tests use.
func ctxT(t *testing.T) context.Context { return testsetup.Context(t) }

// manager returns a Manager for a fresh in-process CA with http-01 served
// on the port the CA validates.
func manager(t *testing.T, store storage.Storage, mod func(*autotls.Manager)) (*autotls.Manager, *testpebble.CA) {
	t.Helper()
	ca := testsetup.CA(t, testpebble.Options{})
	m := testsetup.Manager(t, ca, store, func(m *autotls.Manager) {
		m.DisableTLSALPN01 = true
		if mod != nil {
			mod(m)
		}
	}, "example.com", "www.example.com")
	ca.ServeHTTP01(t, m.HTTPHandler(nil))
	return m, ca
}

// The trail of an issuance: the exchanges and the decision, written to
// storage, read back after a restart, without any secret.
func TestTrailOfAnIssuance(t *testing.T) {
	t.Parallel()
	store := storage.NewMemory()
	log := &Log{Storage: store, Node: "node-a"}
	m, ca := manager(t, store, func(m *autotls.Manager) {
		m.AuditLog = log
	})
	if _, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: "example.com"}); err != nil {
		t.Fatal(err)
	}
	// The Manager answers from its AuditLog, buffered records included.
	// (The ARI poll after the issuance may add a scheduled decision at any
	// moment: ask for the obtained one.)
	viaManager, err := m.Audit(ctxT(t), record.AuditFilter{Name: "example.com", Kind: record.KindDecision, Operation: string(autotls.EventObtained)})
	if err != nil {
		t.Fatalf("Manager.Audit: %v", err)
	}
	if len(viaManager) != 1 || viaManager[0].Operation != string(autotls.EventObtained) || viaManager[0].Serial == "" {
		t.Fatalf("Manager.Audit(example.com obtained) = %+v, want the one obtained", viaManager)
	}
	if err := log.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// A new Log on the same storage: a restart.
	again := &Log{Storage: store, Node: "node-b"}
	defer again.Close()
	recs, err := again.Query(ctxT(t), record.AuditFilter{Name: "example.com"})
	if err != nil {
		t.Fatal(err)
	}
	ops := map[string]int{}
	for _, r := range recs {
		ops[r.Kind+"/"+r.Operation]++
		if r.Node != "node-a" || r.Time.IsZero() {
			t.Errorf("record %+v: want node-a and a time", r)
		}
	}
	for _, want := range []string{"exchange/newOrder", "exchange/challenge", "exchange/finalize", "decision/obtained"} {
		if ops[want] != 1 {
			t.Errorf("%s recorded %d times for example.com, want 1 (all: %v)", want, ops[want], ops)
		}
	}
	all, _ := again.Query(ctxT(t), record.AuditFilter{})
	for _, r := range all {
		if r.Kind == record.KindExchange && (r.Issuer != ca.DirectoryURL() || r.Status == 0 || r.Latency <= 0) {
			t.Errorf("exchange record %+v: want the issuer, a status and a latency", r)
		}
	}
	// Nothing secret reaches storage.
	keys, _ := store.List(ctxT(t), "audit/")
	for _, k := range keys {
		b, _ := store.Load(ctxT(t), k)
		for _, bad := range []string{"PRIVATE KEY", "BEGIN CERTIFICATE", `"protected"`, `"signature"`, "Replay-Nonce"} {
			if strings.Contains(string(b), bad) {
				t.Fatalf("batch %s holds %q", k, bad)
			}
		}
	}
}

// Filters by outcome, issuer, kind and time; a fleet's nodes share the
// trail.
func TestQueryFilters(t *testing.T) {
	t.Parallel()
	forBackends(t, testQueryFilters)
}

func testQueryFilters(t *testing.T, open func() storage.Storage) {
	base := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	a := &Log{Storage: open(), Node: "a"}
	b := &Log{Storage: open(), Node: "b"}
	defer a.Close()
	defer b.Close()
	a.Add(record.Audit{Time: base, Kind: record.KindExchange, Outcome: record.OutcomeOK, Issuer: "https://ca1/dir", Operation: acme.OpNewOrder, Names: []string{"x.example.com"}})
	a.Add(record.Audit{Time: base.Add(time.Minute), Kind: record.KindExchange, Outcome: record.OutcomeFailure, Issuer: "https://ca1/dir", Operation: acme.OpNewOrder, Names: []string{"x.example.com"}, Status: 429})
	b.Add(record.Audit{Time: base.Add(2 * time.Minute), Kind: record.KindDecision, Outcome: record.OutcomeFailure, Issuer: "https://ca2/dir", Operation: string(autotls.EventFailed), Names: []string{"x.example.com"}})
	b.Add(record.Audit{Time: base.Add(3 * time.Minute), Kind: record.KindDecision, Outcome: record.OutcomeOK, Issuer: "https://ca2/dir", Operation: string(autotls.EventObtained), Names: []string{"y.example.com"}})
	for _, l := range []*Log{a, b} {
		if err := l.Flush(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name string
		f    record.AuditFilter
		want int
	}{
		{"all", record.AuditFilter{}, 4},
		{"by name", record.AuditFilter{Name: "x.example.com"}, 3},
		{"failures", record.AuditFilter{Outcome: record.OutcomeFailure}, 2},
		{"by issuer", record.AuditFilter{Issuer: "https://ca2/dir"}, 2},
		{"decisions", record.AuditFilter{Kind: record.KindDecision}, 2},
		{"time range", record.AuditFilter{Since: base.Add(time.Minute), Until: base.Add(3 * time.Minute)}, 2},
		{"limit keeps the newest", record.AuditFilter{Limit: 1}, 1},
	}
	for _, tc := range cases {
		got, err := a.Query(ctxT(t), tc.f)
		if err != nil || len(got) != tc.want {
			t.Errorf("%s: got %d records (%v), want %d", tc.name, len(got), err, tc.want)
		}
	}
	newest, _ := a.Query(ctxT(t), record.AuditFilter{Limit: 1})
	if len(newest) == 1 && newest[0].Node != "b" {
		t.Errorf("the newest record is node %q's, want b's", newest[0].Node)
	}
}

// While storage fails nothing is lost up to MaxBuffered, then the oldest
// records are dropped; retention deletes old batches.
func TestStorageFailureAndRetention(t *testing.T) {
	t.Parallel()
	forBackends(t, testStorageFailureAndRetention)
}

func testStorageFailureAndRetention(t *testing.T, open func() storage.Storage) {
	var fail atomic.Bool
	store := withFailures(open(), fail.Load)
	var mu sync.Mutex
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	l := &Log{Storage: store, Node: "n", MaxBuffered: 5, Retention: 24 * time.Hour}
	l.init()
	l.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	defer l.Close()
	fail.Store(true)
	for i := range 8 {
		l.Add(record.Audit{Time: now.Add(time.Duration(i) * time.Second), Kind: record.KindDecision, Operation: "x" + strconv.Itoa(i)})
	}
	if err := l.Flush(ctxT(t)); err == nil {
		t.Fatal("Flush succeeded on a failing storage")
	}
	fail.Store(false)
	if err := l.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	got, _ := l.Query(ctxT(t), record.AuditFilter{})
	if len(got) != 5 || got[0].Operation != "x3" || got[4].Operation != "x7" {
		t.Fatalf("after recovery: %d records from %v, want the newest 5 (x3…x7)", len(got), got)
	}
	// Three days later the old batch goes.
	mu.Lock()
	now = now.Add(72 * time.Hour)
	mu.Unlock()
	l.Add(record.Audit{Kind: record.KindDecision, Operation: "late"})
	if err := l.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	got, _ = l.Query(ctxT(t), record.AuditFilter{})
	if len(got) != 1 || got[0].Operation != "late" {
		t.Fatalf("after retention: %v, want only the late record", got)
	}
}

// The rate-limit picture: new orders per account in 3 hours, certificates
// per registered domain in 7 days, against the limits.
func TestRateLimits(t *testing.T) {
	t.Parallel()
	forBackends(t, testRateLimits)
}

func testRateLimits(t *testing.T, open func() storage.Storage) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	l := &Log{Storage: open(), Node: "n"}
	defer l.Close()
	const iss = "https://ca/dir"
	for i := range 280 { // 280 in the window, near 300
		l.Add(record.Audit{Time: now.Add(-time.Duration(i) * 30 * time.Second), Kind: record.KindExchange, Outcome: record.OutcomeOK, Issuer: iss, Account: "acct-1", Operation: acme.OpNewOrder})
	}
	l.Add(record.Audit{Time: now.Add(-4 * time.Hour), Kind: record.KindExchange, Outcome: record.OutcomeOK, Issuer: iss, Account: "acct-1", Operation: acme.OpNewOrder})
	l.Add(record.Audit{Time: now.Add(-time.Hour), Kind: record.KindExchange, Outcome: record.OutcomeFailure, Issuer: iss, Account: "acct-1", Operation: acme.OpNewOrder, Status: 429})
	for _, n := range []string{"a.example.com", "b.example.com", "*.example.com", "a.other.co.uk"} {
		l.Add(record.Audit{Time: now.Add(-24 * time.Hour), Kind: record.KindDecision, Outcome: record.OutcomeOK, Issuer: iss, Operation: string(autotls.EventObtained), Names: []string{n}})
	}
	l.Add(record.Audit{Time: now.Add(-8 * 24 * time.Hour), Kind: record.KindDecision, Outcome: record.OutcomeOK, Issuer: iss, Operation: string(autotls.EventRenewed), Names: []string{"c.example.com"}})
	if err := l.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	usage, err := l.RateLimits(ctxT(t), now, nil)
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string]Usage{}
	for _, u := range usage {
		byKey[u.Kind+"/"+u.Key] = u
	}
	if u := byKey[UsageNewOrders+"/acct-1"]; u.Count != 280 || u.Limit != 300 || !u.Near() || u.Window != 3*time.Hour {
		t.Errorf("new orders: %+v, want 280 of 300 in 3h, near", u)
	}
	if u := byKey[UsageCertificates+"/example.com"]; u.Count != 3 || u.Limit != 50 || u.Near() {
		t.Errorf("example.com: %+v, want 3 of 50", u)
	}
	if u := byKey[UsageCertificates+"/other.co.uk"]; u.Count != 1 {
		t.Errorf("other.co.uk: %+v, want 1", u)
	}
	if usage[0].Kind != UsageNewOrders {
		t.Errorf("first usage %+v, want the one nearest its limit", usage[0])
	}
	// A custom limit for the issuer.
	usage, _ = l.RateLimits(ctxT(t), now, map[string]Limits{iss: {NewOrders: 1000, NewOrdersWindow: time.Hour, CertificatesPerDomain: 2, CertificatesWindow: 48 * time.Hour}})
	for _, u := range usage {
		if u.Kind == UsageNewOrders && (u.Limit != 1000 || u.Count != 120) {
			t.Errorf("custom new orders: %+v, want 120 of 1000 in 1h", u)
		}
		if u.Kind == UsageCertificates && u.Key == "example.com" && !u.Near() {
			t.Errorf("custom certificates: %+v, want near (3 of 2)", u)
		}
	}
	b, _ := json.Marshal(usage)
	if len(b) == 0 {
		t.Fatal("usage does not encode")
	}
}

// countingStore counts what is written.
type countingStore struct {
	storage.Storage
	stores, bytes atomic.Int64
}

func (c *countingStore) Store(ctx context.Context, key string, v []byte) error {
	c.stores.Add(1)
	c.bytes.Add(int64(len(v)))
	return c.Storage.Store(ctx, key, v)
}

// BenchmarkIssuanceRecords measures the trail of one issuance: the ten
// exchanges of an order and its decision, written in one batch.
func BenchmarkIssuanceRecords(b *testing.B) {
	b.Run("storage=memory", func(b *testing.B) {
		store := &countingStore{Storage: storage.NewMemory()}
		n := benchIssuanceRecords(b, store)
		b.ReportMetric(float64(store.bytes.Load())/float64(n), "bytes/issuance")
		b.ReportMetric(float64(store.stores.Load())/float64(n), "stores/issuance")
	})
	// Files: a journal of hourly JSON-lines files, one append and fsync
	// per flush.
	b.Run("storage=files", func(b *testing.B) {
		dir := b.TempDir()
		store := storage.Dir(dir)
		defer store.Close()
		n := benchIssuanceRecords(b, store)
		var size int64
		filepath.WalkDir(filepath.Join(dir, ".journal"), func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if fi, err := d.Info(); err == nil {
					size += fi.Size()
				}
			}
			return nil
		})
		b.ReportMetric(float64(size)/float64(n), "bytes/issuance")
	})
}

func benchIssuanceRecords(b *testing.B, store storage.Storage) int {
	l := &Log{Storage: store, Node: "bench"}
	defer l.Close()
	ops := []string{acme.OpNewOrder, acme.OpAuthz, acme.OpChallenge, acme.OpAuthz, acme.OpFinalize, acme.OpOrder, acme.OpCertificate, acme.OpRenewalInfo}
	ids := []acme.Identifier{{Type: acme.IdentifierDNS, Value: "www.example.com"}}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		for _, op := range ops {
			l.ObserveExchange(acme.Exchange{Time: time.Now(), Latency: time.Millisecond, Directory: "https://acme-v02.api.letsencrypt.org/directory", Account: "https://acme-v02.api.letsencrypt.org/acme/acct/123456789", Operation: op, Identifiers: ids, Status: 200})
		}
		l.OnEvent(autotls.Event{Type: autotls.EventObtained, Name: "www.example.com", Issuer: "https://acme-v02.api.letsencrypt.org/directory", Serial: "04a1b2c3d4e5f6", NotAfter: time.Now().Add(90 * 24 * time.Hour)})
		if err := l.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		n++
	}
	return n
}

// Policy refusals reach the trail, paced: a flood of random names records
// at most autotls.MaxRefusedEvents a minute.
func TestRefusalsPaced(t *testing.T) {
	t.Parallel()
	store := storage.NewMemory()
	log := &Log{Storage: store, Node: "n"}
	defer log.Close()
	m, _ := manager(t, store, func(m *autotls.Manager) { m.AuditLog = log })
	for i := range 500 {
		if _, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: "random" + strconv.Itoa(i) + ".example.net"}); !errors.Is(err, autotls.ErrHostNotAllowed) {
			t.Fatalf("got %v, want ErrHostNotAllowed", err)
		}
	}
	recs, err := log.Query(ctxT(t), record.AuditFilter{Outcome: record.OutcomeRefused})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) == 0 || len(recs) > autotls.MaxRefusedEvents {
		t.Fatalf("%d refusal records for 500 refused names, want 1 to %d", len(recs), autotls.MaxRefusedEvents)
	}
	if !strings.Contains(recs[0].Detail, "not allowed") || len(recs[0].Names) != 1 {
		t.Fatalf("refusal record %+v, want the name and the reason", recs[0])
	}
}

func TestManagerAuditWithoutLog(t *testing.T) {
	m := &autotls.Manager{}
	if _, err := m.Audit(ctxT(t), record.AuditFilter{}); !errors.Is(err, autotls.ErrNoAuditLog) {
		t.Fatalf("Audit without AuditLog: got %v, want ErrNoAuditLog", err)
	}
}

// A Log with a negative Retention deletes no batch, however old.
func TestNegativeRetentionKeepsEverything(t *testing.T) {
	t.Parallel()
	store := storage.NewMemory()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	w := &Log{Storage: store, Node: "writer"}
	w.init()
	w.now = func() time.Time { return now }
	w.Add(record.Audit{Kind: record.KindDecision, Operation: "old"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r := &Log{Storage: store, Node: "reader", Retention: -1}
	r.init()
	r.now = func() time.Time { return now.Add(365 * 24 * time.Hour) }
	defer r.Close()
	if err := r.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	got, _ := r.Query(ctxT(t), record.AuditFilter{})
	if len(got) != 1 || got[0].Operation != "old" {
		t.Fatalf("a year later: %v, want the old record kept", got)
	}
}

// A missing dns-persist-01 record is a failure in the trail, with the
// record to publish.
func TestDNSRecordMissingRecorded(t *testing.T) {
	l := &Log{Storage: storage.NewMemory(), Node: "n"}
	defer l.Close()
	l.OnEvent(autotls.Event{Type: autotls.EventDNSRecordMissing, Name: "example.com", DNSRecord: &record.DNS{
		Name: "_validation-persist.example.com", Type: "TXT", ZoneFileValue: `"ca.example; accounturi=https://ca/acct/1"`, Reason: "no TXT record"}})
	recs, err := l.Query(ctxT(t), record.AuditFilter{Name: "example.com"})
	if err != nil || len(recs) != 1 {
		t.Fatalf("Query: %v %v", recs, err)
	}
	if r := recs[0]; r.Outcome != record.OutcomeFailure || !strings.Contains(r.Detail, `_validation-persist.example.com. IN TXT "ca.example; accounturi=https://ca/acct/1": no TXT record`) {
		t.Fatalf("record %+v, want a failure naming the record to publish", r)
	}
}
