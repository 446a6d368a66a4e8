package autotls_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/storage"
)

// errStorageDown is what offlineStore answers for certificates.
var errStorageDown = errors.New("test: storage offline")

// probeStore counts the Loads of certificates, samples the goroutine count
// at each, and at the Load number probeAt measures the live heap. With
// offline set it fails every such Load at once, so that each name given to
// Manage fails fast, without the CA.
type probeStore struct {
	storage.Storage
	offline    bool
	loads      atomic.Int64
	goroutines atomic.Int64 // the most seen
	probeAt    int64
	probe      sync.Once
	heapAt     uint64
}

func (s *probeStore) Load(ctx context.Context, key string) ([]byte, error) {
	if !strings.HasPrefix(key, "certificates/") {
		return s.Storage.Load(ctx, key)
	}
	n := s.loads.Add(1)
	g := int64(runtime.NumGoroutine())
	for {
		old := s.goroutines.Load()
		if g <= old || s.goroutines.CompareAndSwap(old, g) {
			break
		}
	}
	if n == s.probeAt {
		s.probe.Do(func() { s.heapAt = liveHeap() })
	}
	if !s.offline {
		return s.Storage.Load(ctx, key)
	}
	return nil, errStorageDown
}

// liveHeap returns the bytes of live heap objects after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// Manage of 200,000 names streams them through the bounded queue: the
// goroutine count stays that of an idle Manager plus the workers and a
// few results in flight, and while half the names still wait, the heap
// holds no more than it does once every name has been handled (the names
// waiting cost nothing but their place in the caller's slice). It does not
// run in parallel: the goroutine count and the heap are the process's.
func TestManageStreamsNames(t *testing.T) {
	n := 200000
	if raceEnabled || testing.Short() {
		n = 100000
	}
	names := benchNames(n)
	store := &probeStore{Storage: storage.NewMemory(), offline: true, probeAt: int64(n / 2)}
	m := &autotls.Manager{
		Issuers:             []autotls.Issuer{{DirectoryURL: benchDirectory}},
		Storage:             store,
		AcceptTOS:           true,
		MaxBackgroundOrders: 4,
		FailureBackoff:      time.Hour, // no retry runs during the test
	}
	defer m.Close()
	runtime.GC()
	base := runtime.NumGoroutine()
	before := liveHeap()

	err := m.Manage(context.Background(), names...)
	after := liveHeap()

	if !errors.Is(err, errStorageDown) {
		t.Fatalf("Manage: got %v, want the storage's error", clipErr(err))
	}
	want := fmt.Sprintf("%d more names failed", n-1000)
	if !strings.Contains(err.Error(), want) {
		t.Errorf("Manage's error does not say %q: %s", want, clipErr(err))
	}
	if got := store.loads.Load(); got != int64(n) {
		t.Errorf("got %d certificate Loads for %d names, want one each", got, n)
	}
	// Workers (4), the schedule's loop and the storage watcher, plus
	// slack: runtime.NumGoroutine counts goroutines being created and
	// ending loosely, and goroutines left by earlier tests are in base.
	if peak, limit := store.goroutines.Load(), int64(base+4+2+32); peak > limit {
		t.Errorf("peak of %d goroutines during Manage of %d names, want at most %d (%d before)", peak, n, limit, base)
	}
	half, done := int64(store.heapAt)-int64(before), int64(after)-int64(before)
	t.Logf("%d names: heap +%d B (%.1f B/name) with half of them waiting, +%d B (%.1f B/name) once all were handled; peak %d goroutines (%d before)",
		n, half, float64(half)/float64(n), done, float64(done)/float64(n), store.goroutines.Load(), base)
	// The other workers keep allocating while the probe's collection
	// runs, so the heap read mid-call carries some of their garbage: allow
	// 100 B per waiting name, far below what a goroutine per waiting name
	// (2 KiB of stack at least) would cost.
	if slack := int64(n/2) * 100; half > done+slack {
		t.Errorf("with %d names waiting the heap grew by %d B, more than the %d B it holds once all %d are handled (+%d B): the names waiting cost %.0f B each",
			n/2, half, done, n, slack, float64(half-done)/float64(n/2))
	}
	runtime.KeepAlive(names)
	runtime.KeepAlive(err)
}

// clipErr shortens a joined error of thousands of lines for a message.
func clipErr(err error) string {
	if err == nil {
		return "<nil>"
	}
	s := err.Error()
	if len(s) > 400 {
		s = s[:200] + " … " + s[len(s)-200:]
	}
	return s
}

// Manage loads the names whose certificates are in storage without an
// order, orders the others once, leaves a cached name alone, joins an
// issuance already in flight, and keeps going in the background after its
// context is done.
func TestManageStoredAndOrdered(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	f := newFixture(t)
	store := storage.NewMemory()
	const nStored, nNew = 300, 12
	var stored, fresh []string
	for i := range nStored {
		name := fmt.Sprintf("s%d.example.com", i)
		if err := autotls.StoreForTest(ctxT(t), store, e.ca.DirectoryURL(), name, f.leafPEM(t, name, int64(i+2)), f.leafKy); err != nil {
			t.Fatal(err)
		}
		stored = append(stored, name)
	}
	for i := range nNew {
		fresh = append(fresh, fmt.Sprintf("n%d.example.com", i))
	}
	ev := newEventLog()
	m := e.manager(t, store, func(m *autotls.Manager) {
		m.Hosts = autotls.HostWhitelist(stored[0]) // and what Manage gives
		m.MaxBackgroundOrders = 3
		m.OnEvent = ev.on
	})
	// One stored name is cached before Manage; one new name is given
	// twice.
	if _, err := m.GetCertificate(hello(stored[0])); err != nil {
		t.Fatal(err)
	}
	all := append(append(append([]string{}, stored...), fresh...), fresh[0])
	if err := m.Manage(ctxT(t), all...); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	if got := e.ca.Requests("newOrder"); got != nNew {
		t.Errorf("got %d newOrder requests, want %d (one per name without a stored certificate)", got, nNew)
	}
	for _, name := range stored {
		if got := ev.count(autotls.EventLoaded, name); got != 1 {
			t.Errorf("%s: %d loaded events, want 1", name, got)
		}
		if !autotls.CachedForTest(m, name) {
			t.Errorf("%s is not cached after Manage", name)
		}
	}
	for _, name := range fresh {
		if got := ev.count(autotls.EventObtained, name); got != 1 {
			t.Errorf("%s: %d obtained events, want 1", name, got)
		}
	}

	// A context that ends while names are still queued: Manage says so,
	// and the rest is loaded anyway.
	m2 := e.manager(t, store, func(m *autotls.Manager) { m.Hosts = nil; m.MaxBackgroundOrders = 1 })
	ctx, cancel := context.WithCancel(ctxT(t))
	cancel()
	err := m2.Manage(ctx, stored...)
	if !errors.Is(err, autotls.ErrIssuancePending) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Manage with a cancelled context: got %v, want ErrIssuancePending and context.Canceled", clipErr(err))
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("%d more names not queued yet", nStored-2)) {
		t.Errorf("Manage with a cancelled context does not count the names not queued: %s", clipErr(err))
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, name := range stored {
		for !autotls.CachedForTest(m2, name) {
			if time.Now().After(deadline) {
				t.Fatalf("%s not loaded in the background after Manage returned", name)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if _, err := m2.GetCertificate(hello(name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if got := e.ca.Requests("newOrder"); got != nNew {
		t.Errorf("got %d newOrder requests in all, want %d", got, nNew)
	}
}

// BenchmarkManage measures the heap a Manage call of N names costs: midway,
// with half of them still waiting (B/name-midway, over all N names), and
// once all are handled (B/name-after) (what stays per managed name: the managed set and the
// renewal schedule). "failing" names fail at once (storage answers an
// error; each is planned for a retry); "stored" names are loaded from a
// memory store and evicted again (CacheCapacity 1,000), so what stays is
// what a managed name costs out of memory. The Manager's clock stands
// still, so no background step (an ARI poll, a retry) runs meanwhile.
func BenchmarkManage(b *testing.B) {
	for _, bc := range []struct {
		name    string
		n       int
		offline bool
	}{
		{"failing/names=1000000", 1000000, true},
		{"stored/names=100000", 100000, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			mem := storage.NewMemory()
			names := benchNames(bc.n)
			if !bc.offline {
				f := newFixture(b)
				for i, name := range names {
					if err := autotls.StoreForTest(context.Background(), mem, benchDirectory, name, f.leafPEM(b, name, int64(i+2)), f.leafKy); err != nil {
						b.Fatal(err)
					}
				}
			}
			for b.Loop() {
				store := &probeStore{Storage: mem, offline: bc.offline, probeAt: int64(bc.n / 2)}
				m := &autotls.Manager{
					Issuers: []autotls.Issuer{{DirectoryURL: benchDirectory}}, Storage: store, AcceptTOS: true,
					FailureBackoff: time.Hour, CacheCapacity: 1000,
				}
				// A clock that stands still: no ARI poll or retry comes
				// due while the benchmark runs.
				now := time.Now()
				autotls.SetClockForTest(m, func() time.Time { return now })
				before := liveHeap()
				start := time.Now()
				err := m.Manage(context.Background(), names...)
				elapsed := time.Since(start)
				after := liveHeap()
				if bc.offline != (err != nil) {
					b.Fatalf("Manage: %v", clipErr(err))
				}
				b.ReportMetric(float64(int64(store.heapAt)-int64(before))/float64(bc.n), "B/name-midway")
				b.ReportMetric(float64(int64(after)-int64(before))/float64(bc.n), "B/name-after")
				b.ReportMetric(float64(elapsed.Nanoseconds())/float64(bc.n), "ns/name")
				b.ReportMetric(float64(store.goroutines.Load()), "peak-goroutines")
				size, _ := autotls.CacheStatsForTest(m)
				b.ReportMetric(float64(size), "cached")
				runtime.KeepAlive(err)
				m.Close()
			}
		})
	}
}
