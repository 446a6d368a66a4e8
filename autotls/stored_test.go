package autotls_test

import (
	"bytes"
	"sync/atomic"
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
	var offset atomic.Int64
	b := e.manager(t, store, nil)
	autotls.SetClockForTest(b, func() time.Time { return time.Now().Add(time.Duration(offset.Load())) })
	got, err := b.GetCertificate(hello("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Leaf.Raw, first.Leaf.Raw) || len(got.Certificate) != len(first.Certificate) {
		t.Fatalf("served another certificate than the one stored in format 1")
	}
	// The first ARI poll of a loaded certificate is within a minute.
	offset.Store(int64(2 * time.Minute))
	deadline := time.Now().Add(30 * time.Second)
	for {
		autotls.RunDueForTest(b, time.Now().Add(time.Duration(offset.Load())))
		v, err := store.Load(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if f, _ := autotls.StoredFormatForTest(v); f == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still stored in format 1 after the ARI poll")
		}
		time.Sleep(20 * time.Millisecond)
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
