package autotls

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/tlsmint/tlsmint/acme"
)

func (m *Manager) certKey(name string) string {
	return "certificates/" + m.st.issuerKey + "/" + storageName(name) + ".json"
}

func (m *Manager) lockName(name string) string {
	return "issue/" + m.st.issuerKey + "/" + storageName(name)
}

// issue makes a usable certificate for name available: from storage if
// there is one, else from the CA. With renew set it replaces the cached one
// (unless another process already did). ctx derives from the Manager's
// context, never a handshake's.
func (m *Manager) issue(ctx context.Context, name string, onDemand, renew bool) (*tls.Certificate, error) {
	current := m.st.cache.get(name)
	if cert, err := m.fromStorage(ctx, name, current, renew); cert != nil || err != nil {
		return cert, err
	}
	return m.order(ctx, name, onDemand, renew, current)
}

// fromStorage installs and returns a usable stored certificate (for a
// renewal: one newer than current, which another node may have obtained).
// It returns (nil, nil) when there is none, and an error only when storage
// fails: ordering a certificate that cannot be stored could lose it.
func (m *Manager) fromStorage(ctx context.Context, name string, current *entry, renew bool) (*tls.Certificate, error) {
	e, err := m.loadStored(ctx, name)
	switch {
	case err == nil:
		if fresh(e, current, renew) {
			m.install(e, EventLoaded)
			return e.cert, nil
		}
	case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, errCorrupt):
		return nil, fmt.Errorf("autotls: loading %s: %w", name, err)
	}
	return nil, nil
}

// order obtains a certificate from the CA, once across processes: under
// the name's storage lock, after checking storage again.
func (m *Manager) order(ctx context.Context, name string, onDemand, renew bool, current *entry) (*tls.Certificate, error) {
	st := m.st
	store, err := m.storage()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if f := st.failureFor(name, now); f != nil {
		return nil, fmt.Errorf("%w: %s until %s: %w", ErrBackoff, name, f.until.Format(time.RFC3339), f.err)
	}
	if onDemand && !st.limiter.allow(now) {
		return nil, fmt.Errorf("%w: %s: rate limit of new orders", ErrOnDemandLimited, name)
	}

	unlock, err := store.Lock(ctx, m.lockName(name))
	if err != nil {
		return nil, fmt.Errorf("autotls: locking %s: %w", name, err)
	}
	defer func() {
		if err := unlock(); err != nil {
			st.log.Warn("autotls: releasing lock", "name", name, "err", err)
		}
	}()
	// Another process may have finished while we waited for the lock.
	if e, err := m.loadStored(ctx, name); err == nil && fresh(e, current, renew) {
		m.install(e, EventLoaded)
		return e.cert, nil
	}

	e, err := m.obtain(ctx, name, current)
	if err != nil {
		retry := m.recordFailure(name, err, time.Now())
		if current != nil {
			m.storeFailure(ctx, name, err)
		}
		m.emit(Event{Type: EventFailed, Name: name, Err: err, RetryAt: retry})
		return nil, err
	}
	st.clearFailure(name)
	typ := EventObtained
	if current != nil {
		typ = EventRenewed
	}
	m.install(e, typ)
	return e.cert, nil
}

// fresh reports whether a stored entry should be used instead of ordering:
// when not renewing, any unexpired certificate; when renewing, only one
// newer than the cached one that is not itself due for renewal.
func fresh(e, current *entry, renew bool) bool {
	now := time.Now()
	if !now.Before(e.notAfter) {
		return false
	}
	if !renew || current == nil {
		return true
	}
	return e.notAfter.After(current.notAfter) && now.Before(e.renewAt)
}

// install caches an entry, schedules its renewal and reports it.
func (m *Manager) install(e *entry, typ EventType) {
	st := m.st
	st.cache.put(e)
	st.renewer.schedule(m, e)
	m.emit(Event{Type: typ, Name: e.name, NotAfter: e.notAfter, Serial: hex.EncodeToString(e.cert.Leaf.SerialNumber.Bytes())})
}

// loadStored reads and parses the stored certificate of name.
func (m *Manager) loadStored(ctx context.Context, name string) (*entry, error) {
	store, err := m.storage()
	if err != nil {
		return nil, err
	}
	b, err := store.Load(ctx, m.certKey(name))
	if err != nil {
		return nil, err
	}
	s, err := decodeStored(b)
	if err != nil {
		m.st.log.Warn("autotls: ignoring stored certificate", "name", name, "err", err)
		return nil, err
	}
	cert, err := s.tlsCertificate(name)
	if err != nil {
		m.st.log.Warn("autotls: ignoring stored certificate", "name", name, "err", err)
		return nil, err
	}
	return newEntry(name, cert, nil), nil
}

// newEntry makes a cache entry; of the stored metadata it keeps only what
// renewal planning derives from it, so the PEM copies are not retained.
func newEntry(name string, cert *tls.Certificate, meta *storedCert) *entry {
	leaf := cert.Leaf
	return &entry{
		name:     name,
		cert:     cert,
		notAfter: leaf.NotAfter,
		renewAt:  renewalTime(leaf.NotBefore, leaf.NotAfter, meta),
	}
}

// renewalTime is when a certificate should be renewed: when a third of its
// lifetime is left, or in the middle of an ARI window given in meta (no
// caller passes one yet: ARI is not used).
func renewalTime(notBefore, notAfter time.Time, meta *storedCert) time.Time {
	if meta != nil && meta.ARI != nil && !meta.ARI.WindowStart.IsZero() {
		return meta.ARI.WindowStart.Add(meta.ARI.WindowEnd.Sub(meta.ARI.WindowStart) / 2)
	}
	life := notAfter.Sub(notBefore)
	return notAfter.Add(-life / 3)
}

// obtain orders a certificate for name from the CA and stores it.
func (m *Manager) obtain(ctx context.Context, name string, current *entry) (*entry, error) {
	client, err := m.acmeClient(ctx)
	if err != nil {
		return nil, err
	}
	key, err := m.newCertKey()
	if err != nil {
		return nil, err
	}
	solvers, types, err := m.solversFor(name)
	if err != nil {
		return nil, err
	}
	var ids []acme.Identifier
	if a, ok := parseIPName(name); ok {
		ids = acme.IPAddresses(a)
	} else {
		ids = acme.DNSNames(name)
	}
	req := acme.ObtainRequest{
		Identifiers:    ids,
		CertKey:        key,
		Solvers:        solvers,
		ChallengeTypes: types,
		Profile:        m.Profile,
		PreferredChain: m.PreferredChain,
	}
	if current != nil {
		if id, err := acme.CertificateID(current.cert.Leaf); err == nil {
			req.Replaces = id
		}
	}
	res, err := client.Obtain(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("autotls: obtaining %s: %w", name, err)
	}
	data, err := encodeStored(name, m.st.issuer, res.Chain.PEM, key, res.Order.URL, res.Order.Certificate)
	if err != nil {
		return nil, err
	}
	// Obtain has checked the leaf's key and names; serve what it parsed
	// rather than decoding what was just encoded.
	cert := &tls.Certificate{Certificate: res.Chain.DER(), PrivateKey: key, Leaf: res.Leaf()}
	store, _ := m.storage()
	if err := store.Store(ctx, m.certKey(name), data); err != nil {
		// The certificate is served from memory; it will be ordered
		// again after a restart unless storage recovers.
		m.st.log.Error("autotls: storing certificate failed; serving it from memory", "name", name, "err", err)
	}
	return newEntry(name, cert, nil), nil
}

// solversFor returns the solvers and challenge preference for a name.
func (m *Manager) solversFor(name string) (map[string]acme.Solver, []string, error) {
	st := m.st
	s := make(map[string]acme.Solver)
	var types []string
	if strings.HasPrefix(name, "*.") {
		if st.dns == nil {
			return nil, nil, fmt.Errorf("autotls: %s: wildcard names need dns-01: set Manager.DNSProvider", name)
		}
		s[acme.ChallengeDNS01] = st.dns
		return s, []string{acme.ChallengeDNS01}, nil
	}
	// dns-01 first when configured: it needs no listener and works behind
	// anything. Then http-01 once HTTPHandler serves it (it works behind
	// load balancers that terminate TLS), then tls-alpn-01. Obtain does
	// not fall back from one type to the next, so the order matters.
	if _, isIP := parseIPName(name); st.dns != nil && !isIP {
		s[acme.ChallengeDNS01] = st.dns
		types = append(types, acme.ChallengeDNS01)
	}
	if !m.DisableHTTP01 && st.httpInUse.Load() {
		s[acme.ChallengeHTTP01] = st.http01
		types = append(types, acme.ChallengeHTTP01)
	}
	if !m.DisableTLSALPN01 {
		s[acme.ChallengeTLSALPN01] = st.alpn
		types = append(types, acme.ChallengeTLSALPN01)
	}
	if len(s) == 0 {
		return nil, nil, fmt.Errorf("autotls: %s: no challenge can be solved: enable HTTPHandler, tls-alpn-01 or dns-01", name)
	}
	return s, types, nil
}

// storeFailure records a failed renewal in the stored value's metadata
// (last_failure), for operators reading storage and for later use: nothing
// in the Manager reads it back, so neither other nodes nor the next start
// act on it (their backoff is their own). It runs under the name's lock; a
// failure to record is only logged.
func (m *Manager) storeFailure(ctx context.Context, name string, failure error) {
	store, err := m.storage()
	if err != nil {
		return
	}
	b, err := store.Load(ctx, m.certKey(name))
	if err != nil {
		return
	}
	s, err := decodeStored(b)
	if err != nil {
		return
	}
	msg := failure.Error()
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	s.LastFailure = &failureState{At: time.Now().UTC(), Error: msg}
	if b, err = json.Marshal(s); err == nil {
		err = store.Store(ctx, m.certKey(name), b)
	}
	if err != nil {
		m.st.log.Warn("autotls: recording renewal failure", "name", name, "err", err)
	}
}
