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

	"github.com/tlsmint/tlsmint/acme"
)

// storedAccount is the account as kept in storage.
type storedAccount struct {
	URL        string   `json:"url"`
	PrivateKey string   `json:"private_key_pem"`
	Contact    []string `json:"contact,omitempty"`
}

func (m *Manager) accountKey() string {
	who := "default"
	if m.Email != "" {
		sum := sha256.Sum256([]byte(m.Email))
		who = hex.EncodeToString(sum[:8])
	}
	return "accounts/" + m.st.issuerKey + "/" + who + ".json"
}

// acmeClient returns the Manager's ACME client, loading the account from
// storage or registering one (once across a fleet, under a storage lock).
func (m *Manager) acmeClient(ctx context.Context) (*acme.Client, error) {
	st := m.st
	st.clientMu.Lock()
	defer st.clientMu.Unlock()
	if st.client != nil {
		return st.client, nil
	}
	store, err := m.storage()
	if err != nil {
		return nil, err
	}
	c, err := m.loadAccount(ctx)
	if errors.Is(err, fs.ErrNotExist) {
		unlock, lerr := store.Lock(ctx, "account/"+st.issuerKey)
		if lerr != nil {
			return nil, fmt.Errorf("autotls: locking account: %w", lerr)
		}
		defer unlock()
		if c, err = m.loadAccount(ctx); errors.Is(err, fs.ErrNotExist) {
			c, err = m.register(ctx)
		}
	}
	if err != nil {
		return nil, err
	}
	st.client, st.accountURL = c, c.AccountURL
	return c, nil
}

// recoverAccount replaces an account the CA no longer knows
// (accountDoesNotExist: the CA was reset, or the account deactivated): under
// the account lock, the stored account is used if another process already
// replaced the failed one, else exactly one new account is registered and
// stored. failed is the client whose account was refused.
func (m *Manager) recoverAccount(ctx context.Context, failed *acme.Client) (*acme.Client, error) {
	st := m.st
	st.clientMu.Lock()
	defer st.clientMu.Unlock()
	if st.client != nil && st.client != failed {
		return st.client, nil // replaced meanwhile in this process
	}
	store, err := m.storage()
	if err != nil {
		return nil, err
	}
	unlock, err := store.Lock(ctx, "account/"+st.issuerKey)
	if err != nil {
		return nil, fmt.Errorf("autotls: locking account: %w", err)
	}
	defer unlock()
	c, err := m.loadAccount(ctx)
	if err == nil && c.AccountURL != failed.AccountURL {
		st.client, st.accountURL = c, c.AccountURL // another node re-registered
		return c, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	m.st.log.Warn("autotls: the CA no longer knows the account; registering a new one", "issuer", st.issuer, "account", failed.AccountURL)
	c, err = m.register(ctx)
	if err != nil {
		return nil, err
	}
	st.client, st.accountURL = c, c.AccountURL
	return c, nil
}

func (m *Manager) newClient(issuer string) *acme.Client {
	return &acme.Client{DirectoryURL: issuer, HTTPClient: m.HTTPClient, RootCAs: m.RootCAs, Logger: m.Logger, UserAgent: "tlsmint-autotls"}
}

func (m *Manager) loadAccount(ctx context.Context) (*acme.Client, error) {
	store, _ := m.storage()
	b, err := store.Load(ctx, m.accountKey())
	if err != nil {
		return nil, err
	}
	var a storedAccount
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("autotls: stored account is corrupt: %w", err)
	}
	key, err := decodeKey([]byte(a.PrivateKey))
	if err != nil {
		return nil, fmt.Errorf("autotls: stored account: %w", err)
	}
	c := m.newClient(m.st.issuer)
	c.Key, c.AccountURL = key, a.URL
	return c, nil
}

func (m *Manager) register(ctx context.Context) (*acme.Client, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	c := m.newClient(m.st.issuer)
	c.Key = key
	acct := acme.Account{TermsOfServiceAgreed: m.AcceptTOS, ExternalAccountBinding: m.ExternalAccountBinding}
	if m.Email != "" {
		acct.Contact = []string{"mailto:" + m.Email}
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
	store, _ := m.storage()
	if err := store.Store(ctx, m.accountKey(), b); err != nil {
		return nil, fmt.Errorf("autotls: storing account: %w", err)
	}
	attrs := []any{"issuer", m.st.issuer, "account", got.URL}
	if dir, err := c.Directory(ctx); err == nil && dir.Meta.TermsOfService != "" { // cached by Register
		// AcceptTOS agreed to these on the operator's behalf: say which.
		attrs = append(attrs, "terms_of_service", dir.Meta.TermsOfService)
	}
	m.st.log.Info("autotls: registered ACME account", attrs...)
	return c, nil
}
