package testsetup

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"
)

// Key returns a fresh ECDSA P-256 key.
func Key(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("generating a P-256 key: %v", err)
	}
	return k
}

// ContextTimeout bounds the context [Context] returns: longer than any
// flow against the in-process CA takes, shorter than go test's default
// timeout, so that a hung call fails its own test.
const ContextTimeout = 2 * time.Minute

// Context returns a context that ends ContextTimeout from now or after the
// test and its clean-ups. It does not derive from tb.Context, which ends
// before the clean-ups run, so clean-ups may use it.
func Context(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ContextTimeout)
	tb.Cleanup(cancel)
	return ctx
}
