package autotls_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/storage"
)

// loadCounter counts Loads by key prefix and can hold Loads of the
// schedule index until released.
type loadCounter struct {
	storage.Storage
	mu      sync.Mutex
	loads   map[string]int
	hold    chan struct{} // nil: no hold
	holding atomic.Int32
}

func newLoadCounter(s storage.Storage) *loadCounter {
	return &loadCounter{Storage: s, loads: map[string]int{}}
}

func (c *loadCounter) Load(ctx context.Context, key string) ([]byte, error) {
	prefix, _, _ := strings.Cut(key, "/")
	c.mu.Lock()
	c.loads[prefix]++
	hold := c.hold
	c.mu.Unlock()
	if hold != nil && prefix == "index" {
		c.holding.Add(1)
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return c.Storage.Load(ctx, key)
}

func (c *loadCounter) count(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.loads[prefix]
}

func waitDiscovered(t *testing.T, m *autotls.Manager) {
	t.Helper()
	select {
	case <-autotls.DiscoveredForTest(m):
	case <-time.After(60 * time.Second):
		t.Fatal("the schedule was not built from storage within 60s")
	}
}

// A restarted Manager plans the renewal of every stored certificate in
// the background: the first time by listing and loading them (they were
// stored without the index), writing the index; the next time from the
// index alone, without loading one certificate.
func TestStartupBuildsScheduleFromIndex(t *testing.T) {
	t.Parallel()
	const n = 300
	f := newFixture(t)
	store, names, _ := storeN(t, f, n)

	first := benchManager(store, names)
	autotls.SetFastDiscoveryForTest(first)
	first.TLSConfig()
	waitDiscovered(t, first)
	if got := autotls.PlannedForTest(first); got != n {
		t.Fatalf("first start: %d names planned, want %d", got, n)
	}
	if err := first.Close(); err != nil { // writes the index
		t.Fatal(err)
	}
	keys, _ := store.List(context.Background(), "index/")
	if len(keys) == 0 || len(keys) > 1024 {
		t.Fatalf("%d index buckets, want 1 to 1024", len(keys))
	}

	counted := newLoadCounter(store)
	second := benchManager(counted, names)
	defer second.Close()
	second.TLSConfig()
	waitDiscovered(t, second)
	if got := autotls.PlannedForTest(second); got != n {
		t.Fatalf("second start: %d names planned, want %d", got, n)
	}
	if got := counted.count("certificates"); got != 0 {
		t.Fatalf("second start loaded %d certificates, want 0 (the index has them)", got)
	}
	if got, want := counted.count("index"), len(keys); got != want {
		t.Fatalf("second start read %d index buckets, want %d", got, want)
	}
}

// The first handshake is served while the schedule is still being built,
// with one storage read.
func TestHandshakeBeforeScheduleBuilt(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	store, names, _ := storeN(t, f, 50)
	first := benchManager(store, names)
	autotls.SetFastDiscoveryForTest(first)
	first.TLSConfig()
	waitDiscovered(t, first)
	first.Close()

	counted := newLoadCounter(store)
	counted.hold = make(chan struct{})
	m := benchManager(counted, names)
	defer m.Close()
	defer close(counted.hold)
	m.TLSConfig() // the discovery starts and waits on the index
	deadline := time.Now().Add(10 * time.Second)
	for counted.holding.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if counted.holding.Load() == 0 {
		t.Fatal("the discovery never read the index")
	}
	c, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: names[7]})
	if err != nil || c.Leaf.DNSNames[0] != names[7] {
		t.Fatalf("handshake while the schedule is built: %v", err)
	}
	if got := counted.count("certificates"); got != 1 {
		t.Fatalf("%d certificate loads for the first handshake, want 1", got)
	}
	select {
	case <-autotls.DiscoveredForTest(m):
		t.Fatal("the schedule was built although its index reads are held")
	default:
	}
}

// storeOne has a first Manager on a new directory obtain name (with
// before, if not nil, run on it before it closes) and returns the
// directory and the certificate's state as that Manager listed it.
func storeOne(t *testing.T, e *env, name string, before func(*autotls.Manager)) (storage.Storage, record.Certificate) {
	t.Helper()
	store := storage.Dir(t.TempDir())
	first := e.manager(t, store, nil)
	if err := first.Manage(ctxT(t), name); err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(first)
	}
	infos, err := first.Certificates(ctxT(t))
	if err != nil || len(infos) != 1 {
		t.Fatalf("Certificates: %v %v", infos, err)
	}
	first.Close()
	return store, infos[0]
}

// restartFromIndex starts a Manager on store, changed by mod (its clock),
// waits for its schedule to be built, and checks that name was planned
// from the index without being loaded.
func restartFromIndex(t *testing.T, e *env, store storage.Storage, name string, mod func(*autotls.Manager)) (*autotls.Manager, *eventLog) {
	t.Helper()
	ev := newEventLog()
	m := e.manager(t, store, func(m *autotls.Manager) {
		m.OnEvent = ev.on
		mod(m)
	})
	m.TLSConfig()
	waitDiscovered(t, m)
	if !autotls.PlannedAtForTest(m, name) || autotls.CachedForTest(m, name) {
		t.Fatalf("%s: planned %v, in memory %v; want planned from the index, not loaded",
			name, autotls.PlannedAtForTest(m, name), autotls.CachedForTest(m, name))
	}
	return m, ev
}

// A certificate planned from the index, never loaded, is renewed when its
// renewal comes due.
func TestRenewalPlannedFromIndex(t *testing.T) {
	t.Parallel()
	c := newClockedEnv(t, testpebble.Options{}, nil)
	store, old := storeOne(t, c.env, "example.com", nil)

	m, ev := restartFromIndex(t, c.env, store, "example.com", func(m *autotls.Manager) { autotls.SetFakeClockForTest(m, c.clk) })
	if err := c.clk.Jump(old.RenewAt.Add(time.Minute).Sub(c.clk.Now()), m); err != nil {
		t.Fatal(err)
	}
	if r := ev.next(t, autotls.EventRenewed, "example.com", time.Second); r.Serial == old.Serial {
		t.Fatalf("renewed to the same serial")
	}
}

// A certificate planned from the index after a restart, never served
// since, still learns of its revocation through ARI within the default
// poll interval, and is replaced (EventReplaced) long before its planned
// renewal: the index holds no ARI poll times, so every such name is
// looked at once within defaultARIPoll (6 hours) of the start.
func TestARIReachesNamesPlannedFromIndex(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	var leaf *x509.Certificate
	store, info := storeOne(t, e, "example.com", func(first *autotls.Manager) {
		var err error
		if leaf, err = e.handshake(ctxT(t), serve(t, first), "example.com"); err != nil {
			t.Fatal(err)
		}
	})
	renewAt := info.RenewAt
	// A mass revocation: the CA's renewal window opens at once.
	if err := e.ca.Revoke(leaf, 1); err != nil {
		t.Fatal(err)
	}

	clk := autotls.NewFakeClock(time.Now())
	m, ev := restartFromIndex(t, e, store, "example.com", func(m *autotls.Manager) { autotls.SetFakeClockForTest(m, clk) })
	// Six hours and ten minutes on, on the test clock, each due time on
	// the way run: far before the planned renewal.
	if err := clk.Advance(6*time.Hour+10*time.Minute, m); err != nil {
		t.Fatal(err)
	}
	r := ev.next(t, autotls.EventReplaced, "example.com", time.Second)
	if r.Serial == serialHex(leaf) {
		t.Fatalf("replaced by the same serial")
	}
	if !time.Now().Add(7 * time.Hour).Before(renewAt) {
		t.Fatalf("the planned renewal %v was within the test's reach: it proves nothing", renewAt)
	}
}

// A Manager over 100,000 stored certificates (10,000 under the race
// detector) is ready at once: its first handshake, for the last stored
// name, is served while the schedule is still being built in the
// background.
func TestStartupLargeStorage(t *testing.T) {
	t.Parallel()
	n := 100_000
	if raceEnabled || testing.Short() {
		n = 10_000
	}
	f := newFixture(t)
	store, names, _ := storeN(t, f, n)
	m := benchManager(store, names)
	defer m.Close()
	start := time.Now()
	m.TLSConfig()
	c, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: names[n-1]})
	took := time.Since(start)
	if err != nil || c.Leaf.DNSNames[0] != names[n-1] {
		t.Fatalf("first handshake: %v", err)
	}
	select {
	case <-autotls.DiscoveredForTest(m):
		t.Fatalf("the schedule of %d names was built before the first handshake (%v)", n, took)
	default:
	}
	t.Logf("first handshake with %d stored names: %v", n, took)
}

// failFirstList fails the first List of prefix.
type failFirstList struct {
	storage.Storage
	prefix string
	failed atomic.Int32
}

func (s *failFirstList) List(ctx context.Context, prefix string) ([]string, error) {
	if strings.HasPrefix(prefix, s.prefix) && s.failed.Add(1) == 1 {
		return nil, errors.New("storage is briefly down")
	}
	return s.Storage.List(ctx, prefix)
}

// A failed List of the stored certificates at start-up is tried again
// after the failure backoff: the certificates the index does not know are
// still planned.
func TestDiscoveryListRetried(t *testing.T) {
	t.Parallel()
	const n = 20
	f := newFixture(t)
	mem, names, _ := storeN(t, f, n) // stored without the index
	store := &failFirstList{Storage: mem, prefix: "certificates/"}
	m := benchManager(store, names)
	m.FailureBackoff = 10 * time.Millisecond
	autotls.SetFastDiscoveryForTest(m)
	defer m.Close()
	m.TLSConfig()
	waitDiscovered(t, m)
	if got := store.failed.Load(); got < 2 {
		t.Fatalf("%d Lists of the certificates, want the failed one and a retry", got)
	}
	if got := autotls.PlannedForTest(m); got != n {
		t.Fatalf("%d names planned, want all %d", got, n)
	}
}

// storeIndexed stores n certificates with a complete index, as a
// Manager's flush writes it, and returns the storage and the names.
func storeIndexed(t *testing.T, n int) (storage.Storage, []string) {
	t.Helper()
	store, names, _ := storeN(t, newFixture(t), n)
	autotls.CompleteIndexForTest(benchManager(store, names))
	return store, names
}

// The discovery waits for the first handshakes' storage loads to pause
// for 250 ms before it reads the index: it ends no sooner than that after
// the last load, although from a complete index of twenty names it takes
// a few milliseconds. It then plans every stored name.
func TestStartupWaitsForHandshakeLoads(t *testing.T) {
	t.Parallel()
	const n = 20
	store, names := storeIndexed(t, n)
	m := benchManager(store, names)
	defer m.Close()
	var lastLoad time.Time
	for _, name := range names[:5] {
		lastLoad = time.Now()
		if _, err := m.GetCertificate(hello(name)); err != nil {
			t.Fatal(err)
		}
	}
	waitDiscovered(t, m)
	if waited := time.Since(lastLoad); waited < 250*time.Millisecond {
		t.Errorf("the discovery ended %v after the last handshake's load, want at least 250ms", waited)
	}
	if got := autotls.PlannedForTest(m); got != n {
		t.Errorf("planned %d names, want %d", got, n)
	}
}

// Handshakes that keep loading certificates from storage, one every
// 10 ms, do not hold the discovery back for longer than 5 s after the
// Manager's first use.
func TestStartupWaitsAtMostFiveSeconds(t *testing.T) {
	t.Parallel()
	const n = 1000
	store, names := storeIndexed(t, n)
	m := benchManager(store, names)
	defer m.Close()
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-autotls.DiscoveredForTest(m):
			if took := time.Since(start); took > 7*time.Second {
				t.Errorf("the discovery ended %v after the first handshake, want about 5s", took)
			}
			return
		case <-tick.C:
		}
		if i == n {
			t.Fatalf("the discovery did not end while %d handshakes loaded certificates over %v", n, time.Since(start))
		}
		if _, err := m.GetCertificate(hello(names[i])); err != nil {
			t.Fatal(err)
		}
	}
}

// The storage watcher starts after the first handshakes (here: when the
// test releases it). A certificate another node stored between a
// handshake's load and the watcher's start is in the file watcher's first
// scan, so the watch never reports it: the Manager picks it up from the
// modification times once the watch has begun.
func TestWatchCatchesUpChangesBeforeItStarts(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	dir := t.TempDir()
	store := &storage.FileStorage{Path: dir, WatchInterval: 20 * time.Millisecond}
	const name = "late.example.com"
	ctx := context.Background()
	if err := autotls.StoreForTest(ctx, store, benchDirectory, name, f.leafPEM(t, name, 1), f.leafKy); err != nil {
		t.Fatal(err)
	}

	ev := newEventLog()
	m := benchManager(store, []string{name})
	m.OnEvent = ev.on
	release := autotls.HoldStartupForTest(m)
	defer m.Close()
	if got := served(t, m, name); got != "01" {
		t.Fatalf("serves %s, want the stored 01", got)
	}
	// Another node renews: a later expiry, another serial.
	renewed := f.leafPEMValid(t, name, 2, time.Now().Add(-time.Minute), time.Now().Add(91*24*time.Hour))
	if err := autotls.StoreForTest(ctx, &storage.FileStorage{Path: dir}, benchDirectory, name, renewed, f.leafKy); err != nil {
		t.Fatal(err)
	}
	release()
	loaded := ev.waitN(t, autotls.EventLoaded, name, 2, 10*time.Second)[1]
	if loaded.Serial != "02" {
		t.Fatalf("loaded %s, want the renewed 02", loaded.Serial)
	}
	if got := served(t, m, name); got != "02" {
		t.Errorf("serves %s, want the renewed 02", got)
	}
}
