package storagetest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/storage"
)

func mustLock(t *testing.T, ctx context.Context, st storage.Storage, name string) func() error {
	t.Helper()
	unlock, err := st.Lock(ctx, name)
	if err != nil {
		t.Fatalf("Lock(%q): %v", name, err)
	}
	return unlock
}

// wantBlocked checks that Lock(name) does not succeed within d.
func wantBlocked(t *testing.T, st storage.Storage, name string, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	unlock, err := st.Lock(ctx, name)
	if err == nil {
		_ = unlock()
		t.Fatalf("Lock(%q) succeeded while another holder had it", name)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Lock(%q) with an expiring context = %v, want context.DeadlineExceeded", name, err)
	}
}

func (s *suite) testLock(t *testing.T) {
	ctx := testContext(t)
	a, b := s.newStorage(t), s.newStorage(t)
	name := s.key("lock", "basic")
	unlock := mustLock(t, ctx, a, name)
	wantBlocked(t, b, name, 300*time.Millisecond)
	wantBlocked(t, a, name, 100*time.Millisecond) // not re-entrant
	// Another name is independent.
	other := mustLock(t, ctx, b, s.key("lock", "other"))
	if err := other(); err != nil {
		t.Errorf("unlock: %v", err)
	}
	if err := unlock(); err != nil {
		t.Fatalf("unlock: %v", err)
	}
	if err := unlock(); err != nil {
		t.Errorf("second call of unlock = %v, want nil", err)
	}
	unlockB := mustLock(t, ctx, b, name)
	if err := unlockB(); err != nil {
		t.Errorf("unlock: %v", err)
	}
}

func (s *suite) testLockNamespace(t *testing.T) {
	ctx, st := testContext(t), s.newStorage(t)
	prefix := s.key("lockns") + "/"
	name := prefix + "k"
	mustStore(t, ctx, st, name, []byte("value"))
	unlock := mustLock(t, ctx, st, name)
	defer func() { _ = unlock() }()
	unlock2 := mustLock(t, ctx, st, prefix+"only-a-lock")
	defer func() { _ = unlock2() }()
	if got := mustLoad(t, ctx, st, name); string(got) != "value" {
		t.Errorf("Load(%q) while locked = %q, want %q", name, got, "value")
	}
	mustStore(t, ctx, st, name, []byte("changed"))
	list, err := st.List(ctx, prefix)
	if err != nil || len(list) != 1 || list[0] != name {
		t.Errorf("List(%q) while locked = %q, %v; want only %q (locks are not keys)", prefix, list, err, name)
	}
	wantMissing(t, ctx, st, prefix+"only-a-lock")
}

func (s *suite) testLockWaitCancelled(t *testing.T) {
	ctx := testContext(t)
	a, b := s.newStorage(t), s.newStorage(t)
	name := s.key("lock", "cancel")
	unlock := mustLock(t, ctx, a, name)

	waitCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		u, err := b.Lock(waitCtx, name)
		if err == nil {
			_ = u()
			err = errors.New("lock succeeded while another holder had it")
		}
		done <- err
	}()
	// Give the waiter time to start waiting. This is not synchronisation:
	// a Lock whose context is cancelled before it waits must return the
	// same error, so the test passes however late the goroutine runs.
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Lock cancelled while waiting = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Lock did not return after its context was cancelled")
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	// The cancelled waiter must not have taken the lock behind our back.
	u := mustLock(t, ctx, a, name)
	if err := u(); err != nil {
		t.Error(err)
	}
}

func (s *suite) testLockExclusion(t *testing.T) {
	ctx := testContext(t)
	const clients, perClient, rounds = 3, 3, 4
	name := s.key("lock", "exclusion")
	counterKey := s.key("lock", "counter")
	sts := make([]storage.Storage, clients)
	for i := range sts {
		sts[i] = s.newStorage(t)
	}
	mustStore(t, ctx, sts[0], counterKey, []byte("0"))
	var (
		inside  atomic.Int32
		counter int // deliberately unsynchronised: only the lock protects it
		wg      sync.WaitGroup
		errs    = make(chan error, clients*perClient)
	)
	for c := range clients {
		for g := range perClient {
			wg.Go(func() {
				st := sts[c]
				for range rounds {
					unlock, err := st.Lock(ctx, name)
					if err != nil {
						errs <- fmt.Errorf("client %d goroutine %d: Lock: %w", c, g, err)
						return
					}
					if n := inside.Add(1); n != 1 {
						errs <- fmt.Errorf("%d holders inside the lock at once", n)
					}
					counter++
					// A read-modify-write through the store itself.
					v, err := st.Load(ctx, counterKey)
					if err == nil {
						n, _ := strconv.Atoi(string(v))
						err = st.Store(ctx, counterKey, []byte(strconv.Itoa(n+1)))
					}
					if err != nil {
						errs <- err
					}
					time.Sleep(time.Millisecond)
					inside.Add(-1)
					if err := unlock(); err != nil {
						errs <- fmt.Errorf("unlock: %w", err)
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	want := clients * perClient * rounds
	if counter != want {
		t.Errorf("in-memory counter = %d, want %d", counter, want)
	}
	if got := mustLoad(t, ctx, sts[0], counterKey); string(got) != strconv.Itoa(want) {
		t.Errorf("stored counter = %s, want %d", got, want)
	}
}

func (s *suite) testLockVanishedHolder(t *testing.T) {
	if s.cfg.crash == nil {
		t.Skip("no WithCrash option: cannot make a holder vanish")
	}
	ctx := testContext(t)
	victim, other := s.newStorage(t), s.newStorage(t)
	name := s.key("lock", "vanished")
	unlockVictim := mustLock(t, ctx, victim, name)
	s.cfg.crash(t, victim)
	limit := 3*s.cfg.expiry + 5*time.Second
	waitCtx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	start := time.Now()
	unlock, err := other.Lock(waitCtx, name)
	if err != nil {
		t.Fatalf("Lock of a lock whose holder vanished: %v (waited %v, expiry %v)", err, time.Since(start), s.cfg.expiry)
	}
	t.Logf("took over a vanished holder's lock after %v (expiry %v)", time.Since(start).Round(time.Millisecond), s.cfg.expiry)
	// The vanished holder's unlock must not release the new holder's lock.
	_ = unlockVictim()
	wantBlocked(t, s.newStorage(t), name, 200*time.Millisecond)
	if err := unlock(); err != nil {
		t.Errorf("unlock: %v", err)
	}
}

func (s *suite) testLockContext(t *testing.T) {
	ctx := testContext(t)
	st := s.newStorage(t)
	name := s.key("lock", "context")
	lockCtx, unlock, err := storage.LockContext(ctx, st, name)
	if err != nil {
		t.Fatalf("LockContext(%q): %v", name, err)
	}
	select {
	case <-lockCtx.Done():
		t.Fatalf("lock context done while the lock is held: %v", context.Cause(lockCtx))
	case <-time.After(100 * time.Millisecond):
	}
	if err := unlock(); err != nil {
		t.Fatalf("unlock: %v", err)
	}
	select {
	case <-lockCtx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("lock context not done after unlock")
	}
	if errors.Is(context.Cause(lockCtx), storage.ErrLockLost) {
		t.Errorf("cause after unlock = %v, want something other than ErrLockLost", context.Cause(lockCtx))
	}

	// Cancelling the parent ends lockCtx but keeps the lock.
	parent, cancel := context.WithCancel(ctx)
	lockCtx, unlock, err = storage.LockContext(parent, st, name)
	if err != nil {
		t.Fatalf("LockContext(%q): %v", name, err)
	}
	cancel()
	<-lockCtx.Done()
	wantBlocked(t, s.newStorage(t), name, 200*time.Millisecond)
	if err := unlock(); err != nil {
		t.Errorf("unlock: %v", err)
	}
}
