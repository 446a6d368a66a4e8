package autotls

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/storage"
)

// certKey is where the certificate of name from iss is stored.
func certKey(iss *issuer, name string) string {
	return "certificates/" + iss.key + "/" + storageName(name) + ".json"
}

// lockName is the lock that makes a fleet order name once, from whichever
// issuer.
func (m *Manager) lockName(name string) string {
	return "issue/" + storageName(name)
}

// issue makes a usable certificate for name available: from storage if
// there is one, else from the CA. With renew set it replaces the cached one
// (unless another process already did). ctx derives from the Manager's
// context, never a handshake's.
func (m *Manager) issue(ctx context.Context, name string, onDemand, renew bool) (*tls.Certificate, error) {
	current := m.st.cache.get(name)
	if current == nil && renew {
		// Evicted from memory (CacheCapacity): the stored certificate is
		// the one to renew.
		if e, err := m.loadStored(ctx, name); err == nil {
			return m.renewStored(ctx, name, onDemand, e)
		}
	}
	if cert, err := m.fromStorage(ctx, name, current, renew); cert != nil || err != nil {
		return cert, err
	}
	return m.order(ctx, name, onDemand, renew, current)
}

// renewStored renews e, which storage held for name a moment ago and which
// is not in memory: storage is read again only under the lock (order),
// where a value that still holds e is recognised without being parsed.
func (m *Manager) renewStored(ctx context.Context, name string, onDemand bool, e *entry) (*tls.Certificate, error) {
	return m.order(ctx, name, onDemand, true, e)
}

// fromStorage installs and returns a usable stored certificate (for a
// renewal: one newer than current, which another node may have obtained).
// It returns (nil, nil) when there is none, and an error only when storage
// fails: ordering a certificate that cannot be stored could lose it. With
// ServeExpired, an expired stored certificate is installed as a last
// resort when nothing is cached, and its renewal planned at once.
func (m *Manager) fromStorage(ctx context.Context, name string, current *entry, renew bool) (*tls.Certificate, error) {
	e, err := m.loadStoredOther(ctx, name, renewing(current, renew))
	switch {
	case err == nil:
		if m.fresh(e, current, renew) {
			if current == nil && (e.ari == nil || e.ari.NextPoll.IsZero()) {
				// Loaded for a handshake (or a first Manage): its first
				// ARI poll at a random point of the first hours, as the
				// names planned from the index get, so that the polls of
				// a start-up's loads do not run beside its handshakes
				// (BenchmarkHandshakeCached).
				e.ariPoll, _ = m.firstARILook(e.iss, defaultARIPoll)
			}
			m.install(e, EventLoaded)
			return e.cert, nil
		}
		if m.ServeExpired && current == nil && m.st.cache.get(name) == nil {
			m.st.cache.put(e)
			m.st.log.Warn("autotls: serving an expired certificate while it is renewed (ServeExpired)", "name", name, "not_after", e.notAfter)
		}
	case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, errCorrupt):
		return nil, fmt.Errorf("autotls: loading %s: %w", name, err)
	}
	return nil, nil
}

// order obtains a certificate from the CA, once across processes: under
// the name's storage lock, after checking storage again. The order and the
// final Store run under the lock's context, so a holder that lost its
// lease (stalled, partitioned) stops, and a fencing backend refuses its
// Store. Its steps: the issuers that may be asked (usableIssuers), the
// on-demand limit, the lock, storage again, the safety bounds, the
// issuers in turn (orderFrom), and the bookkeeping of a success
// (ordered).
func (m *Manager) order(ctx context.Context, name string, onDemand, renew bool, current *entry) (*tls.Certificate, error) {
	st := m.st
	store, err := m.storage()
	if err != nil {
		return nil, err
	}
	now := m.now()
	if f := st.failures.failureFor(name, now); f != nil {
		return nil, fmt.Errorf("%w: %s until %s: %w", ErrBackoff, name, f.until.Format(time.RFC3339), f.err)
	}
	usable, lapsed, err := m.usableIssuers(ctx, name, now)
	if err != nil {
		return nil, err
	}
	if onDemand && !st.limiter.allow(now) {
		err := fmt.Errorf("%w: %s: rate limit of new orders", ErrOnDemandLimited, name)
		st.refusalCounts.count(err)
		return nil, err
	}

	lockCtx, unlock, err := storage.LockContext(ctx, store, m.lockName(name))
	if err != nil {
		return nil, fmt.Errorf("autotls: locking %s: %w", name, err)
	}
	defer func() {
		if err := unlock(); err != nil {
			st.log.Warn("autotls: releasing lock", "name", name, "err", err)
		}
	}()
	// Another process may have finished while we waited for the lock.
	e, err := m.loadStoredOther(lockCtx, name, renewing(current, renew))
	if err == nil && m.fresh(e, current, renew) {
		m.install(e, EventLoaded)
		return e.cert, nil
	}
	// Storage that cannot be read may hold the certificate another node
	// just obtained: order nothing until it can be read (after a back-off).
	var unreadable storageReadError
	if errors.As(err, &unreadable) {
		return nil, m.orderFailed(lockCtx, name, current, fmt.Errorf("autotls: %s: not ordering while the stored certificate cannot be read: %w", name, err), 0)
	}
	// The safety bounds, whatever the reason for this order.
	if err := m.checkNameBound(name, m.now()); err != nil {
		return nil, m.orderFailed(lockCtx, name, current, err, boundWait(err, m.now()))
	}
	e, served, err := m.orderFrom(ctx, lockCtx, usable, name, current, renew)
	if served != nil || err != nil {
		return served, err
	}
	m.ordered(ctx, e, current, lapsed)
	return e.cert, nil
}

// usableIssuers returns the issuers that may be asked for name now, and
// those among them whose stored Retry-After is over (lapsed). A
// Retry-After that another node, or this one before a restart, got from
// an issuer holds here too: that issuer is skipped until then; when every
// one is, the error says until when.
func (m *Manager) usableIssuers(ctx context.Context, name string, now time.Time) (usable, lapsed []*issuer, err error) {
	var waiting *storedBackoff
	for _, iss := range m.st.issuers {
		b := m.loadBackoff(ctx, iss, name)
		if b != nil && now.Before(b.Until) {
			if waiting == nil || b.Until.Before(waiting.Until) {
				waiting = b
			}
			continue
		}
		if b != nil {
			lapsed = append(lapsed, iss)
		}
		usable = append(usable, iss)
	}
	if len(usable) == 0 {
		err := m.st.rememberBackoff(name, waiting)
		return nil, nil, fmt.Errorf("%w: %s until %s (the CA's Retry-After, stored): %w", ErrBackoff, name, waiting.Until.Format(time.RFC3339), err)
	}
	return usable, lapsed, nil
}

// orderFrom asks the usable issuers in turn, under the lock (lockCtx),
// until one issues. It returns the new entry; or served, a certificate
// served instead (another node's replacement, or one obtained while the
// lock was lost); or the error, once the failure is recorded.
func (m *Manager) orderFrom(ctx, lockCtx context.Context, usable []*issuer, name string, current *entry, renew bool) (e *entry, served *tls.Certificate, err error) {
	st := m.st
	var (
		attempts []error
		minWait  time.Duration // the shortest Retry-After, if every issuer sent one
	)
	for i, iss := range usable {
		if err = m.waitOrder(lockCtx, iss, name); err != nil {
			if ra := boundWait(err, m.now()); i == 0 || (minWait > 0 && ra < minWait) {
				minWait = ra
			}
			attempts = append(attempts, &IssuerError{Issuer: iss.url, Err: err})
			if lockCtx.Err() != nil {
				break
			}
			continue
		}
		e, err = m.obtain(lockCtx, iss, name, current)
		if errors.Is(err, acme.ErrReplacesRefused) {
			// The CA says another order replaced current: someone
			// renewed it. Serve theirs if storage has it; else (a node
			// that ordered and did not store, or a storage slow to show
			// it) wait, and order without replaces at the next attempt.
			if stored, lerr := m.loadStoredOther(lockCtx, name, current); lerr == nil && m.fresh(stored, current, renew) {
				m.install(stored, EventLoaded)
				return nil, stored.cert, nil
			}
			st.replacesRefused.Store(name, true)
			return nil, nil, m.orderFailed(lockCtx, name, current, fmt.Errorf("autotls: renewing %s: the CA says its certificate was already replaced, and storage holds no newer one yet; ordering without replaces at the next attempt: %w", name, err), 0)
		}
		if errors.Is(err, errFenced) {
			// The node that took the lock over stores its own: serve
			// that one when it is there, this one from memory until then.
			if stored, lerr := m.loadStored(ctx, name); lerr == nil && m.fresh(stored, current, renew) {
				m.install(stored, EventLoaded)
				return nil, stored.cert, nil
			}
			st.failures.clear(name)
			m.install(e, EventObtained)
			m.emit(Event{Type: EventNotStored, Name: name, Issuer: iss.url, NotAfter: e.notAfter, Serial: e.serial(), Err: errFenced})
			return nil, e.cert, nil
		}
		if err == nil {
			return e, nil, nil
		}
		if cause := context.Cause(lockCtx); errors.Is(cause, storage.ErrLockLost) {
			err = fmt.Errorf("%w (%w)", err, cause)
		}
		ra := retryAfter(err)
		m.persistBackoff(ctx, iss, name, err, m.now().Add(ra))
		if i == 0 || (minWait > 0 && ra < minWait) {
			minWait = ra
		}
		attempts = append(attempts, &IssuerError{Issuer: iss.url, Err: err})
		if lockCtx.Err() != nil {
			break // lost the lock or closing: no other issuer either
		}
		if i+1 < len(usable) {
			st.log.Warn("autotls: issuer failed; trying the next", "name", name, "issuer", iss.url, "next", usable[i+1].url, "err", err)
			m.emit(Event{Type: EventIssuerFailed, Name: name, Issuer: iss.url, Err: err})
		}
	}
	if len(st.issuers) > 1 {
		err = fmt.Errorf("autotls: obtaining %s failed at %d issuer(s): %w", name, len(attempts), errors.Join(attempts...))
	}
	return nil, nil, m.orderFailed(lockCtx, name, current, err, minWait)
}

// ordered does the bookkeeping of a certificate just obtained for current
// (nil: a first one): the failure and the stored Retry-Afters that are
// over (lapsed) are cleared — those still running, of an issuer that was
// skipped, stay — the name's recent certificates counted, and e installed
// with its event.
func (m *Manager) ordered(ctx context.Context, e, current *entry, lapsed []*issuer) {
	st := m.st
	st.failures.clear(e.name)
	st.nameOrders.obtained(e.name, m.now(), e.notAfter.Sub(e.notBefore))
	for _, iss := range lapsed {
		m.clearBackoff(ctx, iss, e.name)
	}
	typ := EventObtained
	switch {
	case current != nil && current.reason == ReasonARIPast:
		typ = EventReplaced
	case current != nil:
		typ = EventRenewed
	}
	m.install(e, typ)
}

// orderFailed records a failed order of name (wait: the shortest
// Retry-After or bound, if every issuer had one), reports it and returns
// err.
func (m *Manager) orderFailed(ctx context.Context, name string, current *entry, err error, wait time.Duration) error {
	retry := m.recordFailure(name, err, m.now(), wait)
	if current != nil {
		m.storeFailure(ctx, current.iss, name, err)
	}
	m.emitFailure(name, current, err, retry)
	if current != nil && m.now().After(current.notAfter.Add(-current.notAfter.Sub(current.notBefore)/latestShare)) {
		m.emit(Event{Type: EventExpiring, Name: name, Issuer: current.iss.url, NotAfter: current.notAfter, Serial: current.serial(), Err: err, RetryAt: retry})
	}
	return err
}

// fresh reports whether a stored entry should be used instead of ordering:
// any unexpired certificate, and when renewing one newer than the cached
// one — even one that is due itself: another node renewed the cached one,
// and the stored one is renewed in its turn, as the node that obtained it
// plans it (planEntry), with "replaces" naming it rather than the one it
// replaced.
func (m *Manager) fresh(e, current *entry, renew bool) bool {
	if !m.now().Before(e.notAfter) {
		return false
	}
	if !renew || current == nil {
		return true
	}
	return newer(e, current)
}

// newer reports whether e holds a newer certificate than cur: one that
// expires later, or another one that expires at the same second (a
// replacement issued within the second, or by a CA that caps NotAfter).
func newer(e, cur *entry) bool {
	if e.notAfter.Equal(cur.notAfter) {
		return e.cert.Leaf.SerialNumber.Cmp(cur.cert.Leaf.SerialNumber) != 0
	}
	return e.notAfter.After(cur.notAfter)
}

// install caches an entry, plans its next step and reports it. A new
// certificate's renewal information is fetched soon after, in the
// background, when the CA offers it and none is stored for it.
func (m *Manager) install(e *entry, typ EventType) {
	st := m.st
	if e.ari == nil || e.ari.NextPoll.IsZero() {
		if !e.iss.noARI.Load() {
			// For a new certificate, at a random point of the first
			// hours (its window lies far ahead, and the issuance costs
			// no request more than the protocol needs, while a
			// revocation is still noticed within hours); for one loaded
			// from storage, when the loader planned none (fromStorage
			// plans the first hours), at a random point of the next
			// minute, so that loading many neither sends the CA a herd
			// nor wakes the schedule for each.
			switch {
			case typ != EventLoaded:
				e.ariPoll, _ = m.firstARILook(e.iss, st.ariFirstSpread)
			case e.ariPoll.IsZero(): // else planned by the loader
				e.ariPoll, _ = m.firstARILook(e.iss, ariLoadSpread)
			}
		}
	} else {
		e.ariPoll = e.ari.NextPoll
	}
	if typ == EventLoaded && e.reason != ReasonARIPast {
		// Overdue when loaded: the Manager was down when it came due, or
		// another node could not renew it; spread with the others.
		e.renewAt = m.catchUp(e.name, e.renewAt, e.notBefore, e.notAfter)
	}
	st.cache.put(e)
	st.failures.setLapsed(e.name, false)
	st.replacesRefused.Delete(e.name)
	m.plan(e)
	if typ != EventLoaded {
		m.indexPut(e) // a certificate stored here: its plan goes to the index
	}
	m.emit(Event{Type: typ, Name: e.name, Issuer: e.iss.url, NotAfter: e.notAfter, Serial: e.serial(), RenewAt: e.renewAt, Reason: e.reason})
	if e.unstored != nil {
		m.emit(Event{Type: EventNotStored, Name: e.name, Issuer: e.iss.url, NotAfter: e.notAfter, Serial: e.serial(), Err: errNotStored})
	}
}

// errNotStored explains EventNotStored.
var errNotStored = errors.New("autotls: storing the certificate failed; it is served from memory and the Store is retried")

// loadStored reads and parses the stored certificates of name, one per
// issuer, and returns the one that expires last. It fails with an error
// wrapping fs.ErrNotExist when there is none, and with a storage error
// when storage fails.
func (m *Manager) loadStored(ctx context.Context, name string) (*entry, error) {
	return m.loadStoredOther(ctx, name, nil)
}

// loadStoredOther is loadStored for a name whose certificate current is
// known (nil: none): a stored value that holds current's own leaf is not
// parsed again and counts as nothing stored (errSameStored), since it
// holds nothing newer.
func (m *Manager) loadStoredOther(ctx context.Context, name string, current *entry) (*entry, error) {
	var known []byte
	if current != nil {
		known = current.cert.Leaf.Raw
	}
	var best *entry
	var firstErr error
	for _, iss := range m.st.issuers {
		e, err := m.loadFrom(ctx, iss, name, known)
		if err != nil {
			if firstErr == nil || (errors.Is(firstErr, fs.ErrNotExist) && !errors.Is(err, fs.ErrNotExist)) {
				firstErr = err
			}
			continue
		}
		if best == nil || e.notAfter.After(best.notAfter) {
			best = e
		}
	}
	if best != nil {
		return best, nil
	}
	return nil, firstErr
}

// renewing returns current when renewing it, else nil: the certificate a
// stored value is useless if it holds (see fresh).
func renewing(current *entry, renew bool) *entry {
	if renew {
		return current
	}
	return nil
}

// storageReadError marks a stored certificate that storage failed to
// read (not one that is missing or does not parse); its text is the
// storage's error.
type storageReadError struct{ err error }

func (e storageReadError) Error() string { return e.err.Error() }
func (e storageReadError) Unwrap() error { return e.err }

// errSameStored: storage holds the certificate the caller has already.
var errSameStored = fmt.Errorf("autotls: storage holds the same certificate: %w", fs.ErrNotExist)

// loadStoredFrom reads and parses the certificate of name from iss.
func (m *Manager) loadStoredFrom(ctx context.Context, iss *issuer, name string) (*entry, error) {
	return m.loadFrom(ctx, iss, name, nil)
}

// loadFrom reads and parses the certificate of name from iss: one storage
// read, the metadata decoded first, then the chain and key parsed — unless
// the stored leaf is known (the DER of a certificate the caller has), when
// it fails with errSameStored.
func (m *Manager) loadFrom(ctx context.Context, iss *issuer, name string, known []byte) (*entry, error) {
	store, err := m.storage()
	if err != nil {
		return nil, err
	}
	b, err := store.Load(ctx, certKey(iss, name))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			err = storageReadError{err}
		}
		return nil, err
	}
	s, err := decodeStored(b)
	if err != nil {
		m.st.log.Warn("autotls: ignoring stored certificate", "name", name, "err", err)
		return nil, err
	}
	if known != nil && bytes.Equal(s.leafDER(), known) {
		return nil, errSameStored
	}
	cert, err := s.tlsCertificate(name, iss.shared.der)
	if err != nil {
		m.st.log.Warn("autotls: ignoring stored certificate", "name", name, "err", err)
		return nil, err
	}
	e := m.newEntry(iss, name, cert, s.ARI, s.AccountURL, func(x *entry) {
		x.floor, x.ariRenewed = s.RenewFloor, s.ARIRenewed
	})
	return e, nil
}

// newEntry makes a cache entry with its renewal plan; of the stored
// metadata it keeps only what planning needs, and the account URL as the
// copy the issuer's other certificates share.
// set, if not nil, sets what else planning reads before the plan is made.
func (m *Manager) newEntry(iss *issuer, name string, cert *tls.Certificate, ari *ariState, account string, set func(*entry)) *entry {
	leaf := cert.Leaf
	e := &entry{entryData: entryData{
		iss:       iss,
		name:      name,
		cert:      cert,
		notBefore: leaf.NotBefore,
		notAfter:  leaf.NotAfter,
		ari:       ari,
		account:   iss.shared.str(account),
	}}
	if set != nil {
		set(e)
	}
	planEntry(e, m.now())
	return e
}

// obtain orders a certificate for name from the CA and stores it. An
// account the CA no longer accepts (see accountGone) is replaced by
// exactly one new one, and
// the order placed again (without replaces: the new account did not
// obtain the old certificate).
func (m *Manager) obtain(ctx context.Context, iss *issuer, name string, current *entry) (*entry, error) {
	client, err := m.acmeClient(ctx, iss)
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
	if solvers, types, err = m.dnsPersistPrecheck(ctx, iss, client, name, solvers, types); err != nil {
		return nil, fmt.Errorf("autotls: obtaining %s: %w", name, err)
	}
	var ids []acme.Identifier
	_, isIP := parseIPName(name)
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
		Profile:        iss.cfg.Profile,
		PreferredChain: iss.cfg.PreferredChain,
	}
	dir, err := client.Directory(ctx)
	if err != nil {
		return nil, fmt.Errorf("autotls: obtaining %s: %w", name, err)
	}
	if req.Profile == "" && isIP {
		// IP certificates are short-lived where the CA says so.
		if _, ok := dir.Meta.Profiles["shortlived"]; ok {
			req.Profile = "shortlived"
		}
	}
	// replaces only for a certificate this account obtained, at a CA
	// that offers ARI (RFC 9773 ties the two).
	if current != nil && current.iss == iss && dir.RenewalInfo != "" && current.account != "" && current.account == iss.currentAccount() {
		if id, err := acme.CertificateID(current.cert.Leaf); err == nil {
			req.Replaces = id
			// A replacement refused is someone else's renewal (order),
			// unless the last attempt found none stored after one.
			_, refused := m.st.replacesRefused.LoadAndDelete(name)
			req.KeepReplaces = !refused
			if refused {
				req.Replaces = ""
			}
		}
	}
	res, err := client.Obtain(ctx, req)
	if accountGone(ctx, client, err) {
		if client, err = m.recoverAccount(ctx, iss, client); err != nil {
			return nil, fmt.Errorf("autotls: obtaining %s: %w", name, err)
		}
		req.Replaces = ""
		res, err = client.Obtain(ctx, req)
	}
	if err != nil {
		m.dnsPersistObtained(name, iss, err)
		return nil, fmt.Errorf("autotls: obtaining %s: %w", name, err)
	}
	m.notBeforeSkew(res.Leaf().NotBefore, iss.url)
	account := iss.currentAccount()
	chain := res.Chain.DER()
	for i := 1; i < len(chain); i++ {
		chain[i] = iss.shared.der(chain[i])
	}
	cert := &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: res.Leaf()}
	keyDER, err := encodeKeyDER(key)
	if err != nil {
		return nil, err
	}
	obtainedAt := m.now()
	floor := obtainedAt.Add(floorAge(res.Leaf().NotBefore, res.Leaf().NotAfter)).UTC()
	ariRenewed := current != nil && (current.reason == ReasonARI || current.reason == ReasonARIPast)
	data, err := encodeStoredCert(&storedCert{
		storedMeta: storedMeta{
			Name:           name,
			Issuer:         iss.url,
			OrderURL:       res.Order.URL,
			CertificateURL: res.Order.Certificate,
			ObtainedAt:     obtainedAt.UTC(),
			AccountURL:     account,
			ARIRenewed:     ariRenewed,
			RenewFloor:     floor,
		},
		Chain: chain,
		Key:   keyDER,
	})
	if err != nil {
		return nil, err
	}
	// Obtain has checked the leaf's key and names; serve what it parsed
	// rather than decoding what was just encoded.
	e := m.newEntry(iss, name, cert, nil, account, func(x *entry) { x.floor, x.ariRenewed = floor, ariRenewed })
	store, _ := m.storage()
	if err := store.Store(ctx, certKey(iss, name), data); err != nil {
		if errors.Is(err, storage.ErrLockLost) || errors.Is(context.Cause(ctx), storage.ErrLockLost) {
			// Another node holds the name now and stores its own: this
			// one is never written (order serves the stored one, or this
			// one from memory until the other is stored).
			m.st.log.Warn("autotls: lock lost before the certificate was stored; not storing it", "name", name, "err", err)
			return e, errFenced
		}
		m.st.log.Error("autotls: storing certificate failed; serving it from memory and retrying the Store", "name", name, "err", err)
		e.unstored = data
	}
	return e, nil
}

// accountGone reports whether err says that the CA no longer accepts the
// client's account: accountDoesNotExist (the CA was reset), or
// unauthorized for an account that the CA then refuses to show too, or
// shows deactivated or revoked. A deactivated account is answered
// unauthorized on every request (RFC 8555, section 7.3.6: Pebble, Boulder
// and step-ca alike), never accountDoesNotExist; an unauthorized order of
// an account the CA still shows valid keeps the account.
func accountGone(ctx context.Context, client *acme.Client, err error) bool {
	if errors.Is(err, acme.ErrAccountDoesNotExist) {
		return true
	}
	if !errors.Is(err, acme.ErrUnauthorized) {
		return false
	}
	acct, aerr := client.GetAccount(ctx)
	if aerr != nil {
		return errors.Is(aerr, acme.ErrUnauthorized) || errors.Is(aerr, acme.ErrAccountDoesNotExist)
	}
	return acct.Status == acme.StatusDeactivated || acct.Status == acme.StatusRevoked
}

// errFenced: the certificate was obtained but the lock was lost before it
// was stored, so it was not written.
var errFenced = errors.New("autotls: the lock was lost before the certificate was stored")

// solversFor returns the solvers and challenge preference for a name. A
// challenge type whose validation failed at the last attempt goes last.
func (m *Manager) solversFor(name string) (map[string]acme.Solver, []string, error) {
	st := m.st
	s := make(map[string]acme.Solver)
	var types []string
	// dns-persist-01 first when configured: once its record exists it
	// needs no listener and no DNS change at all.
	_, isIP := parseIPName(name)
	if m.DNSPersist01 != nil && !isIP {
		s[acme.ChallengeDNSPersist01] = m.DNSPersist01
		types = append(types, acme.ChallengeDNSPersist01)
	}
	dnsTypes := []string{acme.ChallengeDNS01}
	if m.PreferDNSAccount01 {
		dnsTypes = []string{acme.ChallengeDNSAccount01, acme.ChallengeDNS01}
	}
	if strings.HasPrefix(name, "*.") {
		if st.dns == nil && m.DNSPersist01 == nil {
			return nil, nil, fmt.Errorf("autotls: %s: wildcard names need dns-01 or dns-persist-01: set Manager.DNS01 or Manager.DNSPersist01", name)
		}
		if st.dns != nil {
			for _, t := range dnsTypes {
				s[t] = st.dns
			}
			types = append(types, dnsTypes...)
		}
		return s, types, nil
	}
	// dns-01 next when configured: it needs no listener and works behind
	// anything. Then http-01 once HTTPHandler serves it (it works behind
	// load balancers that terminate TLS), then tls-alpn-01. Obtain does
	// not fall back from one type to the next within an order, so the
	// order matters.
	if st.dns != nil && !isIP {
		for _, t := range dnsTypes {
			s[t] = st.dns
		}
		types = append(types, dnsTypes...)
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
	if bad := st.failures.failedChallenge(name); bad != "" && len(types) > 1 {
		if i := slices.Index(types, bad); i >= 0 {
			types = append(slices.Delete(types, i, i+1), bad)
		}
	}
	return s, types, nil
}
