package autotls_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/storage"
)

// A certificate stored in format 1 (by an earlier version) is served as it
// is, with no new order, and rewritten in format 2 the next time the
// Manager stores it: here, with the renewal information of its first ARI
// poll. A later Manager serves the rewritten value.
func TestStoredFormatMigration(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	store := storage.NewMemory()
	ctx := ctxT(t)
	a := e.manager(t, store, nil)
	first, err := a.GetCertificate(hello("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	key := loadOnlyKey(t, store, "certificates/")
	v2, err := store.Load(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if f, err := autotls.StoredFormatForTest(v2); err != nil || f != 2 {
		t.Fatalf("a new certificate is stored in format %d (%v), want 2", f, err)
	}
	v1, err := autotls.StoredAsFormat1ForTest(v2)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Store(ctx, key, v1); err != nil {
		t.Fatal(err)
	}

	orders := e.ca.Requests("newOrder")
	clk := autotls.NewFakeClock(time.Now())
	b := e.manager(t, store, func(m *autotls.Manager) { autotls.SetFakeClockForTest(m, clk) })
	got, err := b.GetCertificate(hello("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Leaf.Raw, first.Leaf.Raw) || len(got.Certificate) != len(first.Certificate) {
		t.Fatalf("served another certificate than the one stored in format 1")
	}
	// The first ARI poll of a certificate loaded for a handshake is within
	// the first hours (defaultARIPoll, six).
	if err := clk.Advance(6*time.Hour+2*time.Minute, b); err != nil {
		t.Fatal(err)
	}
	v, err := store.Load(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if f, err := autotls.StoredFormatForTest(v); f != 2 {
		t.Fatalf("stored in format %d (%v) after the ARI poll, want 2", f, err)
	}
	b.Close()
	if n := e.ca.Requests("newOrder") - orders; n != 0 {
		t.Fatalf("%d orders for a stored certificate", n)
	}
	c := e.manager(t, store, nil)
	again, err := c.GetCertificate(hello("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Leaf.Raw, first.Leaf.Raw) {
		t.Fatalf("the value rewritten in format 2 serves another certificate")
	}
	infos, err := c.Certificates(ctx)
	if err != nil || len(infos) != 1 || infos[0].ARIWindowEnd.IsZero() {
		t.Fatalf("Certificates = %+v, %v; want one with the stored ARI window", infos, err)
	}
}

// loadOnlyKey returns the one key under prefix in store.
func loadOnlyKey(t *testing.T, store storage.Storage, prefix string) string {
	t.Helper()
	keys, err := store.List(ctxT(t), prefix)
	if err != nil || len(keys) != 1 {
		t.Fatalf("List(%q) = %q, %v; want one key", prefix, keys, err)
	}
	return keys[0]
}

// readCountingStorage counts Loads per key and Locks, and holds every List
// until listing is closed, so that background work that discovers stored
// certificates (it lists them first) cannot add reads to what a test
// counts.
type readCountingStorage struct {
	storage.Storage
	listing chan struct{}
	mu      sync.Mutex
	loads   map[string]int
	locks   int
}

func (s *readCountingStorage) Load(ctx context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	s.loads[key]++
	s.mu.Unlock()
	return s.Storage.Load(ctx, key)
}

func (s *readCountingStorage) Lock(ctx context.Context, name string) (func() error, error) {
	s.mu.Lock()
	s.locks++
	s.mu.Unlock()
	return s.Storage.Lock(ctx, name)
}

func (s *readCountingStorage) List(ctx context.Context, prefix string) ([]string, error) {
	select {
	case <-s.listing:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.Storage.List(ctx, prefix)
}

// The first handshake for a stored name reads storage once — that name's
// value — and takes no lock; the certificate it serves matches its key.
func TestFirstHandshakeOneRead(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	inner, names, pairs := storeN(t, f, 20)
	store := &readCountingStorage{Storage: inner, listing: make(chan struct{}), loads: map[string]int{}}
	m := benchManager(store, names)
	defer m.Close()
	defer close(store.listing)
	c, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: names[7]})
	if err != nil {
		t.Fatal(err)
	}
	want, err := tls.X509KeyPair(pairs[7].chain, pairs[7].key)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.Certificate[0], want.Certificate[0]) || !bytes.Equal(c.Certificate[1], want.Certificate[1]) || len(c.Certificate) != 2 {
		t.Fatalf("served another chain than the stored one")
	}
	if !c.PrivateKey.(*ecdsa.PrivateKey).Equal(want.PrivateKey) {
		t.Fatalf("served another key than the stored one")
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	var certLoads []string
	for k, n := range store.loads {
		if strings.HasPrefix(k, "certificates/") {
			for range n {
				certLoads = append(certLoads, k)
			}
		}
	}
	if len(certLoads) != 1 || !strings.Contains(certLoads[0], names[7]) {
		t.Errorf("certificate reads %q, want one of %s", certLoads, names[7])
	}
	if store.locks != 0 {
		t.Errorf("%d locks taken, want none", store.locks)
	}
}
