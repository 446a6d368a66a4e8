package autotls

import (
	"context"
	"crypto"
	"time"

	"github.com/tlsmint/tlsmint/storage"
)

// StoreForTest writes a certificate chain and key for name into store where
// a Manager for directory finds it, as if it had been obtained.
func StoreForTest(ctx context.Context, store storage.Storage, directory, name string, chainPEM []byte, key crypto.Signer) error {
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	data, err := encodeStoredCert(&storedCert{Name: name, Issuer: directory, CertificatePEM: string(chainPEM), PrivateKeyPEM: string(keyPEM), ObtainedAt: time.Now().UTC()})
	if err != nil {
		return err
	}
	return store.Store(ctx, "certificates/"+issuerKey(directory)+"/"+storageName(name)+".json", data)
}

// SetMinARIPollForTest lowers the floor of the ARI poll interval (one
// minute) so that tests can follow a CA's Retry-After of seconds. Call it
// before the Manager's first use.
func SetMinARIPollForTest(m *Manager, d time.Duration) { m.state().minARIPoll = d }

// SetClockForTest makes the Manager read the time from now. Call it before
// the Manager's first use.
func SetClockForTest(m *Manager, now func() time.Time) { m.state().now = now }

// RunDueForTest runs every scheduled step due at now, as the Manager's
// loop would, and returns the wait until the next.
func RunDueForTest(m *Manager, now time.Time) time.Duration {
	return m.state().sched.runDue(m, now)
}

// SwapForTest replaces name's cached certificate by a copy, as a renewal
// swaps in a new one, and reports whether name was cached.
func SwapForTest(m *Manager, name string) bool {
	st := m.state()
	e := st.cache.get(name)
	if e == nil {
		return false
	}
	c := *e.cert
	st.cache.put(e.with(func(x *entry) { x.cert = &c }))
	return true
}

// RenewForTest renews name's certificate now, as its scheduled renewal
// would, and waits for the result.
func RenewForTest(m *Manager, name string) error {
	f, err := m.enqueueIssue(name, true)
	if err != nil {
		return err
	}
	<-f.done
	return f.err
}

// CacheStatsForTest returns the number of certificates in memory and how
// many were evicted so far.
func CacheStatsForTest(m *Manager) (size int, evicted uint64) {
	st := m.state()
	return st.cache.size(), st.cache.evicted.Load()
}

// CachedForTest reports whether name's certificate is in memory.
func CachedForTest(m *Manager, name string) bool { return m.state().cache.get(name) != nil }

// DiscoveredForTest returns a channel closed when the Manager's schedule
// is built from storage.
func DiscoveredForTest(m *Manager) <-chan struct{} { return m.state().discovered }

// SetFastDiscoveryForTest lifts the pace of the loads of stored
// certificates the schedule index does not know. Call it before the
// Manager's first use.
func SetFastDiscoveryForTest(m *Manager) { m.state().fastDiscovery = true }

// PlannedForTest returns the number of names with a plan.
func PlannedForTest(m *Manager) int { return m.state().sched.planned() }

// PlannedAtForTest reports whether name has a plan.
func PlannedAtForTest(m *Manager, name string) bool { return m.state().sched.has(name) }
