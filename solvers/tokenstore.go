package solvers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sync"
)

// An HTTP01Token is what an http-01 handler needs to answer one challenge:
// the identifier the challenge is for, in canonical form (a lower-case DNS
// name without trailing dot, or an IP address), and the key authorization
// to serve as the body.
type HTTP01Token struct {
	Identifier       string `json:"identifier"`
	KeyAuthorization string `json:"keyAuthorization"`
}

// A TokenStore keeps the http-01 challenges that are being presented, by
// token. Tokens passed to it have already been validated: they are 1 to
// [MaxTokenLen] characters of the base64url alphabet, so they are safe as
// file names and storage keys.
//
// Get returns an error wrapping [io/fs.ErrNotExist] when the token is not
// stored; Delete of a missing token returns nil. Implementations must be
// safe for concurrent use.
type TokenStore interface {
	Put(ctx context.Context, token string, t HTTP01Token) error
	Get(ctx context.Context, token string) (HTTP01Token, error)
	Delete(ctx context.Context, token string) error
}

// MemoryTokens is a [TokenStore] in memory, the default of [HTTP01]. Its
// zero value is ready to use and it is safe for concurrent use.
type MemoryTokens struct {
	mu     sync.RWMutex
	tokens map[string]HTTP01Token
}

// Put implements [TokenStore].
func (m *MemoryTokens) Put(ctx context.Context, token string, t HTTP01Token) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tokens == nil {
		m.tokens = make(map[string]HTTP01Token)
	}
	m.tokens[token] = t
	return nil
}

// Get implements [TokenStore]. It does not allocate.
func (m *MemoryTokens) Get(_ context.Context, token string) (HTTP01Token, error) {
	m.mu.RLock()
	t, ok := m.tokens[token]
	m.mu.RUnlock()
	if !ok {
		return HTTP01Token{}, fs.ErrNotExist
	}
	return t, nil
}

// Delete implements [TokenStore].
func (m *MemoryTokens) Delete(_ context.Context, token string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.tokens, token)
	return nil
}

// KeyValueStore is the part of a shared store that [StorageTokens] needs.
// The tlsmint [github.com/tlsmint/tlsmint/storage.Storage] interface
// satisfies it as is (the package does not import storage), as does any
// store whose Load reports a missing key with an error wrapping
// [io/fs.ErrNotExist] and whose Delete of a missing key returns nil.
type KeyValueStore interface {
	Store(ctx context.Context, key string, value []byte) error
	Load(ctx context.Context, key string) ([]byte, error)
	Delete(ctx context.Context, key string) error
}

// DefaultTokenPrefix is the key prefix under which [StorageTokens] keeps
// tokens when its Prefix is empty.
const DefaultTokenPrefix = "acme-challenges/http-01"

// StorageTokens is a [TokenStore] over a shared [KeyValueStore] (such as the
// tlsmint storage.Storage), so that every node of a fleet behind a load
// balancer can answer a challenge that one of them presented. Each token is
// one JSON value under Prefix + "/" + token.
//
// It is safe for concurrent use if Storage is.
type StorageTokens struct {
	// Storage holds the tokens. Required.
	Storage KeyValueStore
	// Prefix is the key prefix, without a trailing slash. Empty means
	// DefaultTokenPrefix.
	Prefix string
}

func (s StorageTokens) key(token string) string {
	p := s.Prefix
	if p == "" {
		p = DefaultTokenPrefix
	}
	return p + "/" + token
}

// Put implements [TokenStore].
func (s StorageTokens) Put(ctx context.Context, token string, t HTTP01Token) error {
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("solvers: http-01 token: %w", err)
	}
	if err := s.Storage.Store(ctx, s.key(token), b); err != nil {
		return fmt.Errorf("solvers: storing http-01 token: %w", err)
	}
	return nil
}

// Get implements [TokenStore].
func (s StorageTokens) Get(ctx context.Context, token string) (HTTP01Token, error) {
	b, err := s.Storage.Load(ctx, s.key(token))
	if err != nil {
		return HTTP01Token{}, fmt.Errorf("solvers: loading http-01 token: %w", err)
	}
	var t HTTP01Token
	if err := json.Unmarshal(b, &t); err != nil {
		return HTTP01Token{}, fmt.Errorf("solvers: decoding http-01 token: %w", err)
	}
	if t.Identifier == "" || t.KeyAuthorization == "" {
		return HTTP01Token{}, errors.New("solvers: decoding http-01 token: incomplete value")
	}
	return t, nil
}

// Delete implements [TokenStore].
func (s StorageTokens) Delete(ctx context.Context, token string) error {
	if err := s.Storage.Delete(ctx, s.key(token)); err != nil {
		return fmt.Errorf("solvers: deleting http-01 token: %w", err)
	}
	return nil
}
