package autotls

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/storage"
)

// An Issuer is an ACME CA the Manager obtains certificates from, with the
// account it holds there. [Manager.Issuers] lists them in order of
// preference.
type Issuer struct {
	// DirectoryURL is the CA's ACME directory, an absolute https URL.
	// Required; [Manager.Validate] reports an empty or non-https one.
	DirectoryURL string
	// Email is the account's contact address, a bare address such as
	// "ops@example.com" (Validate reports anything else); empty means
	// none.
	Email string
	// ExternalAccountBinding is required by some CAs (ZeroSSL, Google
	// Trust Services) to register the account. Nil means none.
	ExternalAccountBinding *acme.ExternalAccountBinding
	// Profile asks this CA for a certificate profile (for example
	// "shortlived"); empty means the CA's default (and "shortlived" for IP
	// addresses when the CA offers it). A profile the CA's directory does
	// not list is an error before any order.
	Profile string
	// PreferredChain selects among this CA's chains by the common name of
	// their root or an issuer; empty, or a name no chain has, means the
	// CA's default chain.
	PreferredChain string
	// MaxOrdersPerMinute bounds the orders placed with this CA, with
	// bursts of as many; past it the CA is skipped until the bound allows
	// another (see ErrOrderLimited). Zero means DefaultMaxOrdersPerMinute;
	// negative means no bound.
	MaxOrdersPerMinute int
}

// Directory URLs of the public CAs the helpers below use.
const (
	ZeroSSLDirectory             = "https://acme.zerossl.com/v2/DV90"
	GoogleTrustServicesDirectory = "https://dv.acme-v02.api.pki.goog/directory"
)

// LetsEncrypt is Let's Encrypt's production CA, with email as the
// account's contact (empty for none).
func LetsEncrypt(email string) Issuer {
	return Issuer{DirectoryURL: acme.LetsEncryptProduction, Email: email}
}

// LetsEncryptStaging is Let's Encrypt's staging CA, whose certificates no
// browser trusts: for trying a set-up without touching production's rate
// limits.
func LetsEncryptStaging(email string) Issuer {
	return Issuer{DirectoryURL: acme.LetsEncryptStaging, Email: email}
}

// ZeroSSL is ZeroSSL's CA, which needs External Account Binding: the key
// ID and MAC key from its dashboard or API (see [acme.DecodeEABKey]).
func ZeroSSL(email string, eab *acme.ExternalAccountBinding) Issuer {
	return Issuer{DirectoryURL: ZeroSSLDirectory, Email: email, ExternalAccountBinding: eab}
}

// GoogleTrustServices is Google Trust Services' public CA, which needs
// External Account Binding: the key ID and MAC key that its API hands out.
func GoogleTrustServices(email string, eab *acme.ExternalAccountBinding) Issuer {
	return Issuer{DirectoryURL: GoogleTrustServicesDirectory, Email: email, ExternalAccountBinding: eab}
}

// An IssuerError is what one issuer answered when obtaining a certificate
// from it failed. When every issuer fails, the Manager's error joins one
// per issuer tried, so errors.As finds each and errors.Is matches any.
type IssuerError struct {
	Issuer string // the issuer's directory URL
	Err    error
}

// Error prefixes the issuer's error with its directory URL.
func (e *IssuerError) Error() string { return e.Issuer + ": " + e.Err.Error() }

// Unwrap returns the issuer's error.
func (e *IssuerError) Unwrap() error { return e.Err }

// issuer is the run-time state of one Issuer: its storage segments, its
// account's client, and what the Manager learned of its renewal
// information.
type issuer struct {
	cfg Issuer
	url string // cfg.DirectoryURL
	key string // storage key segment of the directory
	who string // storage key segment of the account

	mu         sync.Mutex
	client     *acme.Client
	accountURL string
	// unstored is the encoded account that register could not store: the
	// account is used from memory and the Store retried by acmeClient.
	unstored []byte

	// ari is a key-less client for renewalInfo, which needs no account;
	// noARI is set once the directory is known not to offer it.
	ari   *acme.Client
	noARI atomic.Bool
	// ariHold is when polls may be made again (Unix nanoseconds) after
	// one failed: the other certificates' polls wait for it instead of
	// each failing in turn against a CA that is down.
	ariHold atomic.Int64
	// shared holds the intermediates and account URLs that this CA's
	// certificates in memory share.
	shared interner
	// orders is the bucket of cfg.MaxOrdersPerMinute (nil: no bound).
	orders *limiter
}

// ariHeld returns when ARI polls may resume, if they are held at now.
func (iss *issuer) ariHeld(now time.Time) (time.Time, bool) {
	t := time.Unix(0, iss.ariHold.Load())
	return t, now.Before(t)
}

// issuersFrom builds the issuers of a Manager: Issuers, or LetsEncrypt("")
// when it is empty.
func (m *Manager) issuersFrom() []*issuer {
	cfgs := m.Issuers
	if len(cfgs) == 0 {
		cfgs = []Issuer{LetsEncrypt("")}
	}
	out := make([]*issuer, 0, len(cfgs))
	for _, c := range cfgs {
		iss := &issuer{cfg: c, url: c.DirectoryURL, key: issuerKey(c.DirectoryURL), who: "default", orders: orderLimiter(c.MaxOrdersPerMinute)}
		if c.Email != "" {
			sum := sha256.Sum256([]byte(c.Email))
			iss.who = hex.EncodeToString(sum[:8])
		}
		iss.ari = m.newClient(iss.url)
		out = append(out, iss)
	}
	return out
}

// primary is the first issuer, whose name events without a certificate
// carry.
func (st *state) primary() *issuer { return st.issuers[0] }

// hasIssuerKey reports whether key is the storage segment of one of the
// issuers.
func (st *state) hasIssuerKey(key string) bool {
	for _, iss := range st.issuers {
		if iss.key == key {
			return true
		}
	}
	return false
}

// storedAccount is the account as kept in storage.
type storedAccount struct {
	URL        string   `json:"url"`
	PrivateKey string   `json:"private_key_pem"`
	Contact    []string `json:"contact,omitempty"`
}

func (iss *issuer) accountKey() string { return "accounts/" + iss.key + "/" + iss.who + ".json" }

func (iss *issuer) currentAccount() string {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	return iss.accountURL
}

// acmeClient returns the issuer's ACME client, loading the account from
// storage or registering one (once across a fleet, under a storage lock).
func (m *Manager) acmeClient(ctx context.Context, iss *issuer) (*acme.Client, error) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	store, err := m.storage()
	if err != nil {
		return nil, err
	}
	if iss.client != nil {
		if iss.unstored != nil {
			// Unless another node has stored its own account meanwhile,
			// which is kept.
			if _, err := store.Load(ctx, iss.accountKey()); errors.Is(err, fs.ErrNotExist) {
				m.storeAccount(ctx, store, iss, iss.unstored)
			} else if err == nil {
				iss.unstored = nil
			}
		}
		return iss.client, nil
	}
	c, err := m.loadAccount(ctx, iss)
	if errors.Is(err, fs.ErrNotExist) {
		unlock, lerr := store.Lock(ctx, "account/"+iss.key)
		if lerr != nil {
			return nil, fmt.Errorf("autotls: locking account: %w", lerr)
		}
		defer unlock()
		if c, err = m.loadAccount(ctx, iss); errors.Is(err, fs.ErrNotExist) {
			c, err = m.register(ctx, iss)
		}
	}
	if err != nil {
		return nil, err
	}
	iss.client, iss.accountURL = c, c.AccountURL
	return c, nil
}

// recoverAccount replaces an account the CA no longer accepts (see
// accountGone: the CA was reset, or the account deactivated): under
// the account lock, the stored account is used if another process already
// replaced the failed one, else exactly one new account is registered and
// stored. failed is the client whose account was refused.
func (m *Manager) recoverAccount(ctx context.Context, iss *issuer, failed *acme.Client) (*acme.Client, error) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	if iss.client != nil && iss.client != failed {
		return iss.client, nil // replaced meanwhile in this process
	}
	store, err := m.storage()
	if err != nil {
		return nil, err
	}
	unlock, err := store.Lock(ctx, "account/"+iss.key)
	if err != nil {
		return nil, fmt.Errorf("autotls: locking account: %w", err)
	}
	defer unlock()
	c, err := m.loadAccount(ctx, iss)
	if err == nil && c.AccountURL != failed.AccountURL {
		iss.client, iss.accountURL = c, c.AccountURL // another node re-registered
		return c, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	m.st.log.Warn("autotls: the CA no longer accepts the account; registering a new one", "issuer", iss.url, "account", failed.AccountURL)
	c, err = m.register(ctx, iss)
	if err != nil {
		return nil, err
	}
	iss.client, iss.accountURL = c, c.AccountURL
	return c, nil
}

func (m *Manager) newClient(directory string) *acme.Client {
	return &acme.Client{DirectoryURL: directory, HTTPClient: m.HTTPClient, RootCAs: m.RootCAs, Logger: m.Logger, UserAgent: "tlsmint-autotls", Observer: m.acmeObserver()}
}

func (m *Manager) loadAccount(ctx context.Context, iss *issuer) (*acme.Client, error) {
	store, _ := m.storage()
	b, err := store.Load(ctx, iss.accountKey())
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("autotls: loading account: %w", err)
	}
	var a storedAccount
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("autotls: stored account is corrupt: %w", err)
	}
	key, err := decodeKey([]byte(a.PrivateKey))
	if err != nil {
		return nil, fmt.Errorf("autotls: stored account: %w", err)
	}
	c := m.newClient(iss.url)
	c.Key, c.AccountURL = key, a.URL
	return c, nil
}

// storeAccount stores the encoded account b of iss, whose mu is held; on
// failure it keeps b in iss.unstored for the next try.
func (m *Manager) storeAccount(ctx context.Context, store storage.Storage, iss *issuer, b []byte) {
	if err := store.Store(ctx, iss.accountKey(), b); err != nil {
		iss.unstored = b
		m.st.log.Error("autotls: storing the account failed; using it from memory and retrying the Store", "issuer", iss.url, "err", err)
		return
	}
	iss.unstored = nil
}

func (m *Manager) register(ctx context.Context, iss *issuer) (*acme.Client, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	c := m.newClient(iss.url)
	c.Key = key
	acct := acme.Account{TermsOfServiceAgreed: m.AcceptTOS, ExternalAccountBinding: iss.cfg.ExternalAccountBinding}
	if iss.cfg.Email != "" {
		acct.Contact = []string{"mailto:" + iss.cfg.Email}
	}
	got, err := c.Register(ctx, acct)
	if errors.Is(err, acme.ErrTermsNotAgreed) {
		return nil, fmt.Errorf("autotls: registering account: set Manager.AcceptTOS to agree to the CA's terms: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("autotls: registering account: %w", err)
	}
	c.AccountURL = got.URL
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(storedAccount{URL: got.URL, PrivateKey: string(keyPEM), Contact: acct.Contact})
	if err != nil {
		return nil, err
	}
	// The CA knows the account now: if storage cannot keep it, it is used
	// from memory (and its Store retried) rather than dropped, which would
	// register another one at every attempt.
	store, _ := m.storage()
	m.storeAccount(ctx, store, iss, b)
	attrs := []any{"issuer", iss.url, "account", got.URL}
	if dir, err := c.Directory(ctx); err == nil && dir.Meta.TermsOfService != "" { // cached by Register
		// AcceptTOS agreed to these on the operator's behalf: say which.
		attrs = append(attrs, "terms_of_service", dir.Meta.TermsOfService)
	}
	m.st.log.Info("autotls: registered ACME account", attrs...)
	return c, nil
}
