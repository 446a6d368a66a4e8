package autotls

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/solvers"
	"github.com/tlsmint/tlsmint/storage"
)

// KeyType selects the kind of private key for new certificates.
type KeyType string

// Certificate key types.
const (
	KeyP256    KeyType = "p256" // ECDSA P-256, the default
	KeyP384    KeyType = "p384" // ECDSA P-384
	KeyRSA2048 KeyType = "rsa2048"
	KeyRSA4096 KeyType = "rsa4096"
)

// Defaults for the Manager's zero fields.
const (
	DefaultHandshakeTimeout = 20 * time.Second
	DefaultFailureBackoff   = time.Minute
	maxFailureBackoff       = 4 * time.Hour
	issueTimeout            = 10 * time.Minute
)

// ErrClosed is returned by a Manager after Close.
var ErrClosed = errors.New("autotls: manager closed")

// ErrIssuancePending is returned (wrapped) when a handshake gave up waiting
// for a certificate that is still being obtained; a later handshake gets it.
var ErrIssuancePending = errors.New("autotls: certificate is still being obtained")

// ErrBackoff is returned (wrapped, with the last failure) while a name that
// recently failed is waiting before its next attempt.
var ErrBackoff = errors.New("autotls: waiting after a failed attempt")

// A Manager obtains certificates from an ACME CA when a TLS handshake first
// needs them, stores them and serves them from [Manager.GetCertificate].
//
// The zero value plus a host policy (Hosts, or OnDemand, or names given to
// [Manager.Manage]) and AcceptTOS is ready to use: it orders from Let's Encrypt's
// production CA, with ECDSA P-256 keys, keeps everything under the user's
// cache folder, and solves tls-alpn-01 itself (and http-01 once
// [Manager.HTTPHandler] is in use). Without any policy nothing is ever
// ordered.
//
// The fields come in groups, each headed by a one-line comment: names,
// CA, challenges, storage and memory, limits and timing, observing. Each
// field's comment says what its zero value means; the package doc
// ("Configuration") says where each group is explained at length.
//
// Set the fields before first use and do not change them afterwards. A
// Manager is safe for concurrent use. Call [Manager.Close] to stop its
// background work.
type Manager struct {
	// Names: which may be obtained, and what a handshake without SNI gets.
	//
	// Hosts decides which names may be obtained. Nil refuses every name
	// not given to Manage or allowed by OnDemand.
	Hosts HostPolicy

	// OnDemand lets names beyond Hosts be obtained when its decision
	// function allows them, within its rate limits. Nil means none.
	OnDemand *OnDemand

	// AllowIPCertificates lets an IP address (RFC 8738) be obtained when
	// the host policy allows it in canonical form. False refuses IP names.
	AllowIPCertificates bool

	// DefaultServerName is the name served to a ClientHello without a
	// server name (SNI), under the same rules as one from the client.
	// Empty means such handshakes fail with an error wrapping ErrInvalidName.
	DefaultServerName string

	// CA: where certificates are ordered, and how the CAs are reached.
	//
	// Issuers are the ACME CAs to order from, in order of preference, each
	// with its own account ([LetsEncrypt], [ZeroSSL], …). Empty means
	// LetsEncrypt(""): Let's Encrypt production, with no contact address.
	Issuers []Issuer

	// AcceptTOS agrees to every issuer's terms of service on the
	// operator's behalf. False makes registration fail with an error
	// matching [acme.ErrTermsNotAgreed] (unless the CA has no terms).
	AcceptTOS bool

	// HTTPClient talks to every issuer. Nil means [acme.NewHTTPClient](RootCAs).
	// Redirects are never followed, whatever its CheckRedirect says.
	HTTPClient *http.Client

	// RootCAs are the roots trusted for the issuers' HTTPS servers when
	// HTTPClient is nil. Nil means the system's roots.
	RootCAs *x509.CertPool

	// KeyType is the kind of key for new certificates. Empty means
	// KeyP256.
	KeyType KeyType

	// Challenges: how the CA's validation is answered.
	//
	// DisableHTTP01 and DisableTLSALPN01 turn off the challenges the
	// Manager solves itself. False (both) means both are solved.
	DisableHTTP01, DisableTLSALPN01 bool

	// DNS01 enables dns-01 through a libdns provider (its Provider); it
	// (or DNSPersist01) is needed for wildcard names. Nil disables dns-01.
	DNS01 *solvers.DNS01

	// PreferDNSAccount01 makes DNS01 answer dns-account-01 when the CA
	// offers it, and dns-01 otherwise. False uses dns-01 only.
	PreferDNSAccount01 bool

	// DNSPersist01 enables dns-persist-01: one long-lived TXT record binds
	// each name to the account, read-only without a Provider. Nil
	// disables it.
	DNSPersist01 *solvers.DNSPersist01

	// DNSRecordCheckInterval is how often a missing dns-persist-01 record
	// is looked up again. Zero means DefaultDNSRecordCheckInterval.
	DNSRecordCheckInterval time.Duration

	// Storage and memory: where certificates are kept.

	// Storage keeps certificates, keys and accounts, and locks them across
	// a fleet. Nil means files under os.UserCacheDir()/tlsmint.
	Storage storage.Storage

	// CacheCapacity caps the certificates kept in memory; those that have
	// not served a handshake for the longest while leave it, to be loaded
	// again when needed. Zero or negative means no limit.
	CacheCapacity int

	// Limits and timing: handshake waits, orders at once, failures.
	//
	// HandshakeTimeout is how long a handshake waits for a certificate
	// being obtained before it fails with ErrIssuancePending. Zero means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration

	// MaxHandshakeOrders caps the orders handshakes start at once for
	// names the host policy allows. Zero means DefaultMaxHandshakeOrders.
	MaxHandshakeOrders int

	// MaxBackgroundOrders caps the background work (renewals, Manage,
	// retries, ARI polls, retried Stores) run at once. Zero means
	// DefaultMaxBackgroundOrders.
	MaxBackgroundOrders int

	// FailureBackoff is the first wait after a failed attempt for a name;
	// it doubles with each further failure up to four hours. Zero means
	// DefaultFailureBackoff.
	FailureBackoff time.Duration

	// ServeExpired serves a name's expired certificate when no valid one
	// can be had. False, the default, fails the handshake instead.
	ServeExpired bool

	// Observing: events, exchanges with the CAs, logs.
	//
	// OnEvent is called for every step in a certificate's life; it must be
	// safe for concurrent use and must not block. Nil means none.
	OnEvent func(Event)

	// ACMEObserver is told of every exchange with the CAs; it must be safe
	// for concurrent use and must not block. Nil means none.
	ACMEObserver acme.Observer

	// AuditLog receives every exchange (as ACMEObserver) and every event
	// (as OnEvent), for package audit. Nil means none.
	AuditLog AuditLog

	// Logger receives the Manager's logs. Nil means silent.
	Logger *slog.Logger

	once sync.Once
	st   *state
}

// state is the Manager's run-time state, created on first use.
type state struct {
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts the Manager's goroutines; each is added under flights'
	// mutex while the Manager is open (see flights), so Close waits for
	// all.
	wg sync.WaitGroup

	store     storage.Storage
	storeErr  error
	configErr error // what Validate finds in the fields, checked once
	// defaultName is DefaultServerName normalised (as given if invalid,
	// for getSlow to report), so that a client without SNI is served
	// from the cache without allocating.
	defaultName string
	// issuers are Manager.Issuers (or LetsEncrypt("") when it is empty),
	// in order of preference.
	issuers []*issuer
	log     *slog.Logger

	cache cache

	flights flights

	// nameOrders counts each name's recent certificates
	// (MaxCertificatesPerName).
	nameOrders nameOrders
	unbounded  bool // tests and benchmarks: no MaxCertificatesPerName
	// maxOrderWait is maxOrderWait, and catchUpWindow catchUpWindow
	// (tests set others).
	maxOrderWait, catchUpWindow time.Duration
	// replacesRefused holds the names whose last order the CA refused
	// because of "replaces" while storage held no newer certificate: the
	// next order goes without it.
	replacesRefused sync.Map

	failures failures

	managed managedNames

	dnsPersist dnsPersistState

	http01    *solvers.HTTP01
	alpn      *solvers.TLSALPN01
	dns       acme.Solver
	httpInUse atomic.Bool
	limiter   *limiter
	refusals  *limiter // paces EventRefused
	// refusalCounts counts every refusal (Manager.Refusals).
	refusalCounts refusalCounts

	// index holds the schedule index's pending updates; bgOnce starts the
	// index writer and the discovery of stored certificates, and
	// discovered is closed when the discovery ends. fastDiscovery (tests
	// and benchmarks) lifts its pace.
	index         index
	bgOnce        sync.Once
	discovered    chan struct{}
	fastDiscovery bool
	// born is when the state was made; lastLoad is when (time since born)
	// a handshake last looked up a certificate in storage, and startHold
	// (tests) replaces the wait for them to pause (see awaitQuiet).
	born      time.Time
	lastLoad  atomic.Int64
	startHold chan struct{}
	// indexComplete is set once the discovery has indexed every stored
	// certificate it could read: views then read the index alone.
	indexComplete atomic.Bool

	// views holds the last Snapshot (see Manager.Snapshot).
	views snapshots

	sched          schedule
	queue          queue
	handshakeSlots chan struct{}
	// clock is the Manager's one source of time (see clock).
	clock      clock
	ariBusy    sync.Map // names whose ARI poll runs
	minARIPoll time.Duration
	// ariFirstSpread spreads the first ARI poll of a new certificate
	// (ariFirstSpread; tests set zero: at once).
	ariFirstSpread time.Duration
}

type flight struct {
	done chan struct{}
	cert *tls.Certificate
	err  error
}

func (m *Manager) state() *state {
	m.once.Do(m.init)
	return m.st
}

func (m *Manager) init() {
	st := &state{
		log: m.Logger}
	if st.log == nil {
		st.log = slog.New(slog.DiscardHandler)
	}
	st.ctx, st.cancel = context.WithCancel(context.Background())
	st.born = time.Now()
	st.cache.init(m.CacheCapacity)
	st.flights.init()
	st.failures.init()
	st.managed.init()
	st.discovered = make(chan struct{})
	st.issuers = m.issuersFrom()
	st.store = m.Storage
	if st.store == nil {
		dir, err := os.UserCacheDir()
		if err != nil {
			st.storeErr = fmt.Errorf("%w: no Storage set and no user cache folder (%w): set Manager.Storage", ErrInvalidConfig, err)
		} else {
			st.store = storage.Dir(filepath.Join(dir, "tlsmint"))
		}
	}
	var tokens solvers.TokenStore = &solvers.MemoryTokens{}
	if st.store != nil {
		// Tokens in the shared storage: any node of a fleet can answer.
		tokens = solvers.StorageTokens{Storage: st.store}
	}
	st.http01 = &solvers.HTTP01{Store: tokens, Logger: m.Logger}
	st.alpn = &solvers.TLSALPN01{Logger: m.Logger}
	if m.DNS01 != nil {
		st.dns = m.DNS01
	}
	if m.OnDemand != nil {
		st.limiter = newLimiter(m.OnDemand)
	}
	st.refusals = newLimiter(&OnDemand{RateLimit: MaxRefusedEvents, RateInterval: time.Minute})
	st.sched.init()
	st.clock.local = time.Now
	st.minARIPoll = minARIPoll
	st.ariFirstSpread = ariFirstSpread
	st.maxOrderWait = maxOrderWait
	st.catchUpWindow = catchUpWindow
	st.handshakeSlots = make(chan struct{}, m.handshakeLimit())

	st.configErr = m.checkFields(st)
	st.defaultName = m.DefaultServerName
	if n, err := m.serverName(m.DefaultServerName); err == nil {
		st.defaultName = n
	}
	m.st = st
}

// An AuditLog receives a Manager's exchanges with its CAs and its events
// (see [Manager.AuditLog]); the Log of package audit is one. Both methods must be safe
// for concurrent use and must not block.
type AuditLog interface {
	acme.Observer
	OnEvent(Event)
}

// observers joins the ACME observers the Manager's clients report to.
type observers []acme.Observer

func (o observers) ObserveExchange(e acme.Exchange) {
	for _, x := range o {
		x.ObserveExchange(e)
	}
}

// acmeObserver returns what the Manager's ACME clients report to.
func (m *Manager) acmeObserver() acme.Observer {
	o := observers{skewObserver{m}}
	if m.ACMEObserver != nil {
		o = append(o, m.ACMEObserver)
	}
	if m.AuditLog != nil {
		o = append(o, m.AuditLog)
	}
	if len(o) == 1 {
		return o[0]
	}
	return o
}

// now is the time as the Manager sees it.
func (m *Manager) now() time.Time { return m.st.clock.now() }

func (m *Manager) emit(e Event) {
	st := m.st
	if e.Issuer == "" {
		e.Issuer = st.primary().url
	}
	level := slog.LevelInfo
	switch e.Type {
	case EventFailed:
		level = slog.LevelWarn
	case EventRefused:
		level = slog.LevelDebug
	}
	if st.log.Enabled(st.ctx, level) {
		st.log.Log(st.ctx, level, "autotls: certificate "+string(e.Type), "event", e)
	}
	if m.AuditLog != nil {
		m.AuditLog.OnEvent(e)
	}
	if m.OnEvent != nil {
		m.OnEvent(e)
	}
}

func (m *Manager) handshakeTimeout() time.Duration {
	if m.HandshakeTimeout > 0 {
		return m.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

// Close stops the Manager's background work (issuance and renewal), waits
// for it to end, and releases every storage lock it holds. Certificates
// already cached are still served afterwards; nothing new is obtained.
// Work in progress is cancelled; the writes that should not be lost (the
// schedule index's pending updates, a CA's Retry-After) get up to 10
// seconds each, so Close takes that long when storage does not answer.
//
// Calling Close again, even concurrently, waits for the first call to end
// and returns nil.
func (m *Manager) Close() error {
	st := m.state()
	if !st.flights.close() {
		st.flights.waitClosed()
		return nil
	}
	defer st.flights.closeEnded()
	st.cancel()
	st.wg.Wait()
	if m.Storage == nil && st.store != nil {
		// The default file storage is the Manager's own.
		if c, ok := st.store.(interface{ Close() error }); ok {
			return c.Close()
		}
	}
	return nil
}

func (m *Manager) storage() (storage.Storage, error) {
	st := m.st
	if st.storeErr != nil {
		return nil, st.storeErr
	}
	return st.store, nil
}

// newCertKey generates a key of the configured type.
func (m *Manager) newCertKey() (crypto.Signer, error) {
	switch m.KeyType {
	case "", KeyP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case KeyRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case KeyRSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("autotls: unknown KeyType %q", m.KeyType)
}
