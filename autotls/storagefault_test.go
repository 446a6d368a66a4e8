package autotls_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/storage"
)

// prefixFaults fails the chosen operations on keys under prefix while
// fail is set, after letting passLoads more Loads through.
type prefixFaults struct {
	storage.Storage
	prefix           string
	failLoad, failSt bool
	fail             atomic.Bool
	passLoads        atomic.Int32
}

func (p *prefixFaults) hit(key string) bool {
	return p.fail.Load() && strings.HasPrefix(key, p.prefix)
}

func (p *prefixFaults) Load(ctx context.Context, key string) ([]byte, error) {
	if p.failLoad && p.hit(key) && p.passLoads.Add(-1) < 0 {
		return nil, errDisk
	}
	return p.Storage.Load(ctx, key)
}

func (p *prefixFaults) Store(ctx context.Context, key string, v []byte) error {
	if p.failSt && p.hit(key) {
		return errDisk
	}
	return p.Storage.Store(ctx, key, v)
}

// An account the CA registered but storage could not keep is used from
// memory, and its Store retried, instead of the order failing and the next
// attempt registering yet another account at the CA.
func TestAccountNotStoredIsKept(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	store := &prefixFaults{Storage: storage.NewMemory(), prefix: "accounts/", failSt: true}
	store.fail.Store(true)
	m := e.manager(t, store, nil)
	for _, name := range []string{"example.com", "www.example.com"} {
		if _, err := m.GetCertificate(hello(name)); err != nil {
			t.Fatalf("GetCertificate(%s) while accounts cannot be stored: %v", name, err)
		}
	}
	if n := e.ca.Requests("newAccount"); n != 1 {
		t.Fatalf("%d accounts registered, want 1", n)
	}
	if keys, _ := store.List(ctxT(t), "accounts/"); len(keys) != 0 {
		t.Fatalf("accounts stored while every Store fails: %v", keys)
	}
	store.fail.Store(false)
	if _, err := m.GetCertificate(hello("a.example.com")); err != nil {
		t.Fatal(err)
	}
	if keys, _ := store.List(ctxT(t), "accounts/"); len(keys) != 1 {
		t.Fatalf("stored accounts after storage recovered: %v, want the one in use", keys)
	}
	m2 := e.manager(t, store, nil)
	if _, err := m2.GetCertificate(hello("b.example.com")); err != nil {
		t.Fatal(err)
	}
	if n := e.ca.Requests("newAccount"); n != 1 {
		t.Fatalf("%d accounts registered after a restart, want 1 (the stored one)", n)
	}
}

// A failure to read the stored account says what failed.
func TestAccountLoadFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	store := &prefixFaults{Storage: storage.NewMemory(), prefix: "accounts/", failLoad: true}
	store.fail.Store(true)
	m := e.manager(t, store, nil)
	_, err := m.GetCertificate(hello("example.com"))
	if !errors.Is(err, errDisk) || !strings.HasPrefix(err.Error(), "autotls: ") || !strings.Contains(err.Error(), "account") {
		t.Fatalf("GetCertificate while the account cannot be read = %v, want an autotls error about the account wrapping the storage's", err)
	}
	if n := e.ca.Requests("newAccount") + e.ca.Requests("newOrder"); n != 0 {
		t.Fatalf("%d newAccount and newOrder requests while the stored account cannot be read, want none", n)
	}
}

// slowStore makes every call wait until its context is done while hang is
// set, as a storage that stopped answering does.
type slowStore struct {
	storage.Storage
	hang atomic.Bool
}

func (s *slowStore) Load(ctx context.Context, key string) ([]byte, error) {
	if s.hang.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return s.Storage.Load(ctx, key)
}

// A handshake for a new name waits at most HandshakeTimeout in all, the
// look-up in a storage that does not answer included: it waited for the
// look-up, then HandshakeTimeout again for the issuance. A cached name is
// served meanwhile.
func TestHandshakeTimeoutWithHangingStorage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	store := &slowStore{Storage: storage.NewMemory()}
	const timeout = 2 * time.Second
	m := e.manager(t, store, func(m *autotls.Manager) { m.HandshakeTimeout = timeout })
	if _, err := m.GetCertificate(hello("example.com")); err != nil {
		t.Fatal(err)
	}
	store.hang.Store(true)
	if c, err := m.GetCertificate(hello("example.com")); err != nil || c == nil {
		t.Fatalf("cached name while storage hangs: %v", err)
	}
	start := time.Now()
	_, err := m.GetCertificate(hello("www.example.com"))
	took := time.Since(start)
	if !errors.Is(err, autotls.ErrIssuancePending) {
		t.Fatalf("new name while storage hangs = %v, want ErrIssuancePending", err)
	}
	// Generous for a loaded machine, and well below the 2 × timeout it was.
	if took > timeout*7/4 {
		t.Errorf("the handshake waited %v, want about HandshakeTimeout (%v)", took, timeout)
	}
	store.hang.Store(false) // so that Close writes the index at once
}

// A renewal that finds the stored certificate unreadable under its lock
// (the look before the lock read it) orders nothing: storage may hold the
// one another node just obtained. The certificate in memory is still
// served.
func TestRenewalWhenStoredUnreadable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	store := &prefixFaults{Storage: storage.NewMemory(), prefix: "certificates/", failLoad: true}
	m := e.manager(t, store, nil)
	first, err := m.GetCertificate(hello("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	orders := e.ca.Requests("newOrder")
	store.passLoads.Store(1) // the renewal's look before the lock
	store.fail.Store(true)
	err = autotls.RenewForTest(m, "example.com")
	if !errors.Is(err, errDisk) || !strings.Contains(err.Error(), "not ordering") {
		t.Fatalf("renewal while the stored certificate cannot be read = %v, want an error saying so, wrapping the storage's", err)
	}
	if n := e.ca.Requests("newOrder"); n != orders {
		t.Fatalf("%d newOrder requests during the renewal, want none", n-orders)
	}
	if c, err := m.GetCertificate(hello("example.com")); err != nil || c != first {
		t.Fatalf("after the failed renewal: %v, want the certificate in memory", err)
	}
}
