package storagetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/storage"
)

// Option adjusts [Run]. Options are created by the With functions of this
// package.
type Option interface{ apply(*config) }

type config struct {
	crash  func(t *testing.T, s storage.Storage)
	expiry time.Duration
	fill   func(s storage.Storage, room int)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithCrash tells [Run] how to make a client vanish as if its process had
// died: crash must stop everything that keeps s's locks alive (heartbeats,
// connections) without releasing them. With it, Run checks that a lock held
// by a vanished client is taken over once it has expired; without it, that
// test is skipped.
func WithCrash(crash func(t *testing.T, s storage.Storage)) Option {
	return optionFunc(func(c *config) { c.crash = crash })
}

// WithLockExpiry gives the longest time a lock of a vanished holder may
// survive with the backend as configured by newStorage (its stale period or
// lease time). Run allows three times this, plus a few seconds, for the
// takeover. The default is 30 seconds.
func WithLockExpiry(d time.Duration) Option {
	return optionFunc(func(c *config) { c.expiry = d })
}

// Run runs the conformance suite against the backend that newStorage opens,
// as subtests of t.
//
// newStorage is called several times per run; each call must return a new,
// independent client of the same backing store (the same folder, the same
// database), so that clients see each other's values and contend for the
// same locks, just as separate processes would. A backend that cannot have
// independent clients (an in-memory store) may return the same value every
// time. newStorage should register any clean-up with t.Cleanup, and should
// configure short lock polling intervals so that the suite runs quickly.
//
// The backing store need not be empty: the suite works under a key prefix of
// its own, chosen at random, and deletes what it stored when it finishes. It
// never lists keys outside that prefix.
func Run(t *testing.T, newStorage func(t *testing.T) storage.Storage, opts ...Option) {
	t.Helper()
	cfg := config{expiry: 30 * time.Second}
	for _, o := range opts {
		o.apply(&cfg)
	}
	s := &suite{cfg: cfg, newStorage: newStorage, ns: "storagetest-" + randomHex(6)}
	t.Cleanup(func() { s.cleanup(t) })

	t.Run("StoreLoad", s.testStoreLoad)
	t.Run("LoadMissing", s.testLoadMissing)
	t.Run("EmptyValue", s.testEmptyValue)
	t.Run("BinaryValue", s.testBinaryValue)
	t.Run("LargeValue", s.testLargeValue)
	t.Run("Overwrite", s.testOverwrite)
	t.Run("Delete", s.testDelete)
	t.Run("OddKeys", s.testOddKeys)
	t.Run("InvalidKeys", s.testInvalidKeys)
	t.Run("KeyAndPrefix", s.testKeyAndPrefix)
	t.Run("List", s.testList)
	t.Run("Stat", s.testStat)
	t.Run("CancelledContext", s.testCancelledContext)
	t.Run("ConcurrentStoreLoad", s.testConcurrentStoreLoad)
	t.Run("ConcurrentDelete", s.testConcurrentDelete)
	t.Run("OtherClient", s.testOtherClient)
	t.Run("Lock", s.testLock)
	t.Run("LockNamespace", s.testLockNamespace)
	t.Run("LockWaitCancelled", s.testLockWaitCancelled)
	t.Run("LockExclusion", s.testLockExclusion)
	t.Run("LockVanishedHolder", s.testLockVanishedHolder)
	t.Run("LockContext", s.testLockContext)
	t.Run("Watch", s.testWatch)
	t.Run("Journal", s.testJournal)
	t.Run("FullDisk", s.testFullDisk)
}

type suite struct {
	cfg        config
	newStorage func(t *testing.T) storage.Storage
	ns         string
}

// key returns a key inside the suite's namespace.
func (s *suite) key(parts ...string) string {
	k := s.ns
	for _, p := range parts {
		k += "/" + p
	}
	return k
}

func (s *suite) cleanup(t *testing.T) {
	st := s.newStorage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	keys, err := st.List(ctx, s.ns+"/")
	if err != nil {
		t.Errorf("clean-up: List(%q): %v", s.ns+"/", err)
		return
	}
	for _, k := range keys {
		if err := st.Delete(ctx, k); err != nil {
			t.Errorf("clean-up: Delete(%q): %v", k, err)
		}
	}
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
