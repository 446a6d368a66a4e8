package testsetup

import (
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// PollInterval is how often the clients of [Client] poll orders and
// authorizations: the in-process CA validates in milliseconds.
const PollInterval = 10 * time.Millisecond

// Client returns an ACME client of ca with a fresh P-256 account key, not
// yet registered, polling every PollInterval.
func Client(tb testing.TB, ca *testpebble.CA) *acme.Client {
	tb.Helper()
	return &acme.Client{DirectoryURL: ca.DirectoryURL(), Key: Key(tb), HTTPClient: ca.HTTPClient(), PollInterval: PollInterval}
}

// Registered returns a [Client] of ca with an account registered, its
// terms of service agreed.
func Registered(tb testing.TB, ca *testpebble.CA) *acme.Client {
	tb.Helper()
	c := Client(tb, ca)
	if _, err := c.Register(Context(tb), acme.Account{TermsOfServiceAgreed: true}); err != nil {
		tb.Fatalf("Register: %v", err)
	}
	return c
}
