package relay

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/storage"
)

func TestNoncesBounded(t *testing.T) {
	n := newNonces(4)
	first := n.issue()
	var rest []string
	for range 4 {
		rest = append(rest, n.issue())
	}
	if got := n.len(); got != 4 {
		t.Fatalf("%d live nonces, want the bound 4", got)
	}
	if n.redeem(first) {
		t.Fatal("the oldest nonce survived past the bound")
	}
	for _, v := range rest {
		if len(v) != nonceLen {
			t.Fatalf("nonce %q has length %d, want %d", v, len(v), nonceLen)
		}
		if !n.redeem(v) {
			t.Fatalf("nonce %q not accepted", v)
		}
		if n.redeem(v) {
			t.Fatalf("nonce %q accepted twice", v)
		}
	}
	for _, bad := range []string{"", "x", first + "x", "AAAAAAAAAAAAAAAAAAAAAA"} {
		if n.redeem(bad) {
			t.Fatalf("redeem(%q) = true", bad)
		}
	}
	// Redeemed slots are reused without harm.
	for range 10 {
		if v := n.issue(); !n.redeem(v) {
			t.Fatal("fresh nonce refused")
		}
	}
}

// TestSharedNonceLifetime: a shared nonce expires after NonceLifetime, one
// dated too far ahead is refused, another Server on the storage (a
// restart) accepts the nonces of the first, and the sweep deletes the
// records of expired nonces only.
func TestSharedNonceLifetime(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	store := storage.NewMemory()
	s := &Server{Storage: store, SharedNonces: true, NonceLifetime: 10 * time.Minute, now: clock}
	s.init()
	defer s.Close()
	n := s.shared

	v, err := n.issue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != sharedNonceLen {
		t.Fatalf("nonce %q has length %d, want %d", v, len(v), sharedNonceLen)
	}
	old, _ := n.issue(ctx)
	now = now.Add(9 * time.Minute)
	// Another Server on the storage: the key is shared.
	s2 := &Server{Storage: store, SharedNonces: true, NonceLifetime: 10 * time.Minute, now: clock}
	s2.init()
	defer s2.Close()
	if ok, err := s2.shared.redeem(ctx, v); !ok || err != nil {
		t.Fatalf("the other Server's nonce within its lifetime: %v, %v; want accepted", ok, err)
	}
	if ok, _ := n.redeem(ctx, v); ok {
		t.Fatal("a redeemed nonce accepted again by the first Server")
	}
	now = now.Add(2 * time.Minute)
	if ok, err := n.redeem(ctx, old); ok || err != nil {
		t.Fatalf("a nonce past its lifetime: %v, %v; want refused", ok, err)
	}

	// Dated ahead: a Server whose clock runs two minutes fast issues
	// nonces the others refuse, one minute fast is tolerated.
	for _, c := range []struct {
		ahead time.Duration
		ok    bool
	}{{time.Minute - time.Second, true}, {2 * time.Minute, false}} {
		fast := &Server{Storage: store, SharedNonces: true, NonceLifetime: 10 * time.Minute, now: func() time.Time { return now.Add(c.ahead) }}
		fast.init()
		f, err := fast.shared.issue(ctx)
		fast.Close()
		if err != nil {
			t.Fatal(err)
		}
		if ok, _ := n.redeem(ctx, f); ok != c.ok {
			t.Errorf("a nonce dated %v ahead: accepted %v, want %v", c.ahead, ok, c.ok)
		}
	}

	// The sweep keeps the records of nonces that have not expired and
	// deletes the others.
	fresh, _ := n.issue(ctx)
	if ok, _ := n.redeem(ctx, fresh); !ok {
		t.Fatal("fresh nonce refused")
	}
	before, _ := store.List(ctx, keyNonceUsed)
	if len(before) < 2 {
		t.Fatalf("%d redeemed nonce records, want at least 2", len(before))
	}
	if err := n.sweep(ctx, now); err != nil {
		t.Fatal(err)
	}
	if after, _ := store.List(ctx, keyNonceUsed); len(after) != len(before) {
		t.Fatalf("sweep at once deleted %d of %d records of unexpired nonces", len(before)-len(after), len(before))
	}
	if err := n.sweep(ctx, now.Add(25*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if after, _ := store.List(ctx, keyNonceUsed); len(after) != 0 {
		t.Fatalf("records left after every nonce expired: %v", after)
	}
	// The key is stored once, 32 bytes.
	if k, err := store.Load(ctx, keyNonceKey); err != nil || len(k) != 32 {
		t.Fatalf("stored nonce key: %d bytes, %v", len(k), err)
	}
}

// A storage that fails makes new-nonce a 500, not a nonce that cannot be
// checked; the redemption fails closed.
func TestSharedNonceStorageFails(t *testing.T) {
	ctx := context.Background()
	s := &Server{Storage: failingStorage{storage.NewMemory()}, SharedNonces: true}
	s.init()
	defer s.Close()
	if _, err := s.shared.issue(ctx); err == nil {
		t.Fatal("issue with a failing storage: no error")
	}
	good := &Server{Storage: storage.NewMemory(), SharedNonces: true}
	good.init()
	defer good.Close()
	v, err := good.shared.issue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.shared.redeem(ctx, v); ok || err == nil {
		t.Fatalf("redeem with a failing storage: %v, %v; want refused with an error", ok, err)
	}
}

type failingStorage struct{ storage.Storage }

func (failingStorage) Load(context.Context, string) ([]byte, error) {
	return nil, errors.New("disk on fire")
}

// flappyStorage fails every n-th Stat, Store and Lock (counted together).
type flappyStorage struct {
	storage.Storage
	mu sync.Mutex
	i  int
	n  int
}

func (f *flappyStorage) flap() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.i++
	return f.i%f.n == 0
}

// written reports whether a failed Store writes all the same (every
// other one).
func (f *flappyStorage) written() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.i%2 == 0
}

func (f *flappyStorage) Stat(ctx context.Context, key string) (storage.KeyInfo, error) {
	if f.flap() {
		return storage.KeyInfo{}, errors.New("flap")
	}
	return f.Storage.Stat(ctx, key)
}

func (f *flappyStorage) Store(ctx context.Context, key string, v []byte) error {
	if f.flap() {
		// A failed Store may have written the value (storage.Storage).
		if f.written() {
			f.Storage.Store(ctx, key, v)
		}
		return errors.New("flap")
	}
	return f.Storage.Store(ctx, key, v)
}

func (f *flappyStorage) Lock(ctx context.Context, name string) (func() error, error) {
	if f.flap() {
		return nil, errors.New("flap")
	}
	return f.Storage.Lock(ctx, name)
}

// TestSharedNonceStorageFlaps: two replicas on a storage that fails one
// operation in three redeem each nonce many times at once; however the
// failures fall, each nonce is accepted at most once, and every failure is
// an error (fail closed), never an acceptance.
func TestSharedNonceStorageFlaps(t *testing.T) {
	ctx := context.Background()
	mem := storage.NewMemory()
	var replicas []*Server
	for range 2 {
		s := &Server{Storage: &flappyStorage{Storage: mem, n: 3}, SharedNonces: true}
		s.init()
		defer s.Close()
		replicas = append(replicas, s)
	}
	issuer := &Server{Storage: mem, SharedNonces: true}
	issuer.init()
	defer issuer.Close()
	for range 20 {
		v, err := issuer.shared.issue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		accepted := 0
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				ok, err := replicas[i%2].shared.redeem(ctx, v)
				if ok && err != nil {
					t.Errorf("redeem: accepted with an error %v", err)
				}
				if ok {
					mu.Lock()
					accepted++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if accepted > 1 {
			t.Fatalf("a nonce was accepted %d times", accepted)
		}
	}
}
