package autotls_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// A managed name whose validation keeps failing is retried in the
// background while handshakes ask for it: the retry planned after one
// attempt reads that name's failure record while the next attempt, started
// by a handshake, records its own (run with -race).
func TestFailureRecordSharedByRetryAndHandshake(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	const name = "www.example.org"
	e.failHost.Store(name)
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.FailureBackoff = time.Millisecond
		m.DisableTLSALPN01 = true
	})
	if err := m.Manage(ctxT(t), name); err == nil {
		t.Fatal("Manage succeeded with failing validation")
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		_, err := m.GetCertificate(hello(name))
		if err == nil || (!errors.Is(err, autotls.ErrBackoff) && !errors.Is(err, autotls.ErrIssuancePending) && !errorsHasProblem(err)) {
			t.Fatalf("GetCertificate: got %v, want the failure or its back-off", err)
		}
	}
}

func errorsHasProblem(err error) bool {
	var p *acme.Problem
	return errors.As(err, &p)
}
