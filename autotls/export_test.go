package autotls

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"time"

	"github.com/tlsmint/tlsmint/storage"
)

// StoreForTest writes a certificate chain and key for name into store where
// a Manager for directory finds it, as if it had been obtained.
func StoreForTest(ctx context.Context, store storage.Storage, directory, name string, chainPEM []byte, key crypto.Signer) error {
	keyDER, err := encodeKeyDER(key)
	if err != nil {
		return err
	}
	s := &storedCert{storedMeta: storedMeta{Name: name, Issuer: directory, ObtainedAt: time.Now().UTC()}, Key: keyDER, Chain: chainDER(chainPEM)}
	data, err := encodeStoredCert(s)
	if err != nil {
		return err
	}
	return store.Store(ctx, "certificates/"+issuerKey(directory)+"/"+storageName(name)+".json", data)
}

// SetMinARIPollForTest lowers the floor of the ARI poll interval (one
// minute) so that tests can follow a CA's Retry-After of seconds. Call it
// before the Manager's first use.
func SetMinARIPollForTest(m *Manager, d time.Duration) { m.state().minARIPoll = d }

// UnboundedForTest lifts the Manager's safety bounds on orders
// (MaxCertificatesPerName, the issuers' MaxOrdersPerMinute), for
// benchmarks and tests that order far more than a day's worth. Call it
// before the Manager's first use.
func UnboundedForTest(m *Manager) {
	st := m.state()
	st.unbounded = true
	for _, iss := range st.issuers {
		iss.orders = nil
	}
}

// SetMaxOrderWaitForTest sets how long an order waits for its issuer's
// bound of orders per minute (a minute) before the issuer is skipped.
func SetMaxOrderWaitForTest(m *Manager, d time.Duration) { m.state().maxOrderWait = d }

// SetCatchUpForTest sets the window over which renewals found overdue at
// start-up are spread (an hour); zero renews them at once. Call it before
// the Manager's first use.
func SetCatchUpForTest(m *Manager, d time.Duration) { m.state().catchUpWindow = d }

// SetARIFirstPollForTest sets the spread of a new certificate's first
// ARI poll (a random point of the first six hours); zero polls at once
// after issuance. Call it before the Manager's first use.
func SetARIFirstPollForTest(m *Manager, spread time.Duration) { m.state().ariFirstSpread = spread }

// SetClockForTest makes the Manager read the time from now, standing for
// the world's time: the test CA does not follow it, so the Manager does
// not correct it from the CA's Date headers. Call it before the Manager's
// first use.
func SetClockForTest(m *Manager, now func() time.Time) {
	st := m.state()
	st.clock.local, st.clock.fixed = now, true
}

// SetLocalClockForTest makes the Manager's local clock read now, a clock
// that is off from the CA's: the Manager measures and corrects the skew as
// it would with a skewed host clock. Call it before the Manager's first
// use.
func SetLocalClockForTest(m *Manager, now func() time.Time) { m.state().clock.local = now }

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
	st := m.state()
	// Due now, as at its planned time, so that a retry after a failure
	// comes due too.
	for {
		e := st.cache.get(name)
		if e == nil || st.cache.swap(e, e.with(func(x *entry) { x.renewAt = m.now() })) {
			break
		}
	}
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

// PlanTimeForTest returns when name's next step is planned.
func PlanTimeForTest(m *Manager, name string) (time.Time, bool) {
	s := &m.state().sched
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.plans.find(name)
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(0, s.plans.items[s.plans.slots[i]-1].at), true
}

// PlannedAtForTest reports whether name has a plan.
func PlannedAtForTest(m *Manager, name string) bool { return m.state().sched.has(name) }

// StoredLeafForTest decodes a stored certificate value (any format) and
// returns its leaf and the account URL that obtained it.
func StoredLeafForTest(value []byte) (*x509.Certificate, string, error) {
	s, err := decodeStored(value)
	if err != nil {
		return nil, "", err
	}
	leaf, err := x509.ParseCertificate(s.leafDER())
	if err != nil {
		return nil, "", err
	}
	return leaf, s.AccountURL, nil
}

// StoredAsFormat1ForTest re-encodes a stored certificate value in format 1
// (JSON with PEM), as versions before format 2 wrote it, without its
// renewal information.
func StoredAsFormat1ForTest(value []byte) ([]byte, error) {
	s, err := decodeStored(value)
	if err != nil {
		return nil, err
	}
	var chain []byte
	for _, der := range s.Chain {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	s.ARI = nil
	return json.Marshal(storedV1{Version: 1, storedMeta: s.storedMeta, CertificatePEM: string(chain),
		PrivateKeyPEM: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: s.Key}))})
}

// StoredFormatForTest returns the format of a stored certificate value.
func StoredFormatForTest(value []byte) (int, error) {
	s, err := decodeStored(value)
	if err != nil {
		return 0, err
	}
	return s.version, nil
}

// EndBackoffForTest ends name's back-off now, as if its time had run out;
// the rest of its failure record (the failed challenge type) stays.
func EndBackoffForTest(m *Manager, name string) {
	st := m.state()
	st.failures.mu.Lock()
	defer st.failures.mu.Unlock()
	if f := st.failures.byName[name]; f != nil {
		f.until = st.clock.now()
	}
}

// CompleteIndexForTest runs m's discovery of the stored certificates at
// once (unpaced), waits for it and closes m, which writes the schedule
// index of every stored name: storage as a Manager that ran for a while
// leaves it, for the next one to start from.
func CompleteIndexForTest(m *Manager) {
	m.state().fastDiscovery = true
	m.TLSConfig()
	<-m.state().discovered
	m.Close()
}
