package autotls_test

import (
	"crypto/tls"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/storage"
)

// With a capacity far below the names served, concurrent handshakes for
// random names all succeed with their own certificate and key (a TLS 1.3
// handshake proves the key) while certificates are evicted and loaded
// again; memory stays within the capacity.
func TestEvictionUnderConcurrentHandshakes(t *testing.T) {
	t.Parallel()
	const n, capacity = 40, 8
	f := newFixture(t)
	store, names, _ := storeN(t, f, n)
	m := benchManager(store, names)
	m.CacheCapacity = capacity
	defer m.Close()
	ln := serve(t, m)
	var wg sync.WaitGroup
	var failed atomic.Int32
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 60 {
				name := names[r.IntN(n)]
				d := tls.Dialer{Config: &tls.Config{ServerName: name, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}}
				c, err := d.DialContext(ctxT(t), "tcp", ln)
				if err != nil {
					t.Errorf("handshake for %s: %v", name, err)
					failed.Add(1)
					return
				}
				leaf := c.(*tls.Conn).ConnectionState().PeerCertificates[0]
				c.Close()
				if leaf.DNSNames[0] != name {
					t.Errorf("handshake for %s got the certificate of %v", name, leaf.DNSNames)
				}
			}
		})
	}
	wg.Wait()
	size, evicted := autotls.CacheStatsForTest(m)
	if size > capacity {
		t.Errorf("%d certificates in memory, capacity %d", size, capacity)
	}
	if evicted == 0 {
		t.Errorf("nothing evicted after 480 handshakes over %d names with capacity %d", n, capacity)
	}
}

// A hot name survives a sweep: its reference bit keeps it while names
// touched once are evicted.
func TestEvictionKeepsHotNames(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	store, names, _ := storeN(t, f, 30)
	m := benchManager(store, names)
	m.CacheCapacity = 10
	defer m.Close()
	hot := names[0]
	for _, name := range names[1:] {
		if _, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: hot}); err != nil {
			t.Fatal(err)
		}
		if _, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: name}); err != nil {
			t.Fatal(err)
		}
	}
	if !autotls.CachedForTest(m, hot) {
		t.Fatalf("the name served between every other one was evicted")
	}
}

// A certificate evicted from memory is still renewed when its renewal
// comes due: the plan loads it from storage and orders its successor.
// Both for names given to Manage and for names first served by a
// handshake (reloaded by the plan itself).
func TestRenewalOfEvictedCertificate(t *testing.T) {
	t.Parallel()
	for _, managed := range []bool{true, false} {
		t.Run(map[bool]string{true: "managed", false: "handshake"}[managed], func(t *testing.T) {
			t.Parallel()
			testRenewalOfEvicted(t, managed)
		})
	}
}

func testRenewalOfEvicted(t *testing.T, managed bool) {
	ce := newClockedEnv(t, testpebble.Options{}, nil)
	ev := newEventLog()
	store := storage.Dir(t.TempDir())
	m := ce.env.manager(t, store, func(m *autotls.Manager) {
		m.CacheCapacity = 1
		m.OnEvent = ev.on
		autotls.SetFakeClockForTest(m, ce.clk)
	})
	ctx := ctxT(t)
	for _, name := range []string{"example.com", "www.example.org"} {
		var err error
		if managed {
			err = m.Manage(ctx, name)
		} else {
			_, err = m.GetCertificate(hello(name))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if autotls.CachedForTest(m, "example.com") {
		t.Fatalf("example.com still in memory with capacity 1 after www.example.org")
	}
	infos, err := m.Certificates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var old record.Certificate
	for _, info := range infos {
		if info.Name == "example.com" {
			old = info
		}
	}
	if old.Serial == "" || old.InMemory {
		t.Fatalf("example.com: %+v, want a stored certificate not in memory", old)
	}
	// The due plan reloads it, the reload plans the renewal at once, and
	// the renewal runs.
	if err := ce.clk.Jump(old.RenewAt.Sub(ce.clk.Now())+time.Minute, m); err != nil {
		t.Fatal(err)
	}
	renewed := ev.next(t, autotls.EventRenewed, "example.com", time.Second)
	if renewed.Serial == old.Serial {
		t.Fatalf("renewed to the same serial %s", old.Serial)
	}
	c, err := m.GetCertificate(hello("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	// The jump of the clock may leave the new certificate due as well, so
	// it may have been renewed again meanwhile: it must be one of the
	// renewals.
	renewals, _ := ev.matching(autotls.EventRenewed, "example.com")
	if got := serialHex(c.Leaf); got == old.Serial || !slices.ContainsFunc(renewals, func(e loggedEvent) bool { return e.Serial == got }) {
		t.Fatalf("served serial %s after the renewal, want %s (old %s); events: %s", got, renewed.Serial, old.Serial, ev)
	}
}
