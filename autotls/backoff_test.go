package autotls_test

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/storage"
)

// More than 10,000 names failing at once are none of them forgotten:
// every one still backs off (another attempt for each fails at once, with
// no new attempt and no request to the CA), whether its back-off lives
// only in memory or also in storage (a CA's Retry-After) — and the stored
// Retry-After holds after a restart. Most names fail fast, before any
// request (wildcards without dns-01); the others are refused by the CA
// with a 429 and an hour's Retry-After.
func TestManyFailingNamesBackOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	store := storage.NewMemory()
	nMem, nStored := 9900, 600
	if testing.Short() {
		nMem = 2000
	}
	memNames, storedNames := make([]string, nMem), make([]string, nStored)
	for i := range memNames {
		memNames[i] = fmt.Sprintf("*.w%d.example.com", i)
	}
	for i := range storedNames {
		storedNames[i] = fmt.Sprintf("ra%d.example.com", i)
	}
	all := append(append([]string{}, memNames...), storedNames...)
	var failed atomic.Int64
	mod := func(m *autotls.Manager) {
		m.Hosts = nil
		m.FailureBackoff = time.Hour // no retry comes due during the test
		m.MaxBackgroundOrders = 8
		autotls.UnboundedForTest(m)
		m.OnEvent = func(ev autotls.Event) {
			if ev.Type == autotls.EventFailed {
				failed.Add(1)
			}
		}
	}
	m1 := e.manager(t, store, mod)
	ctx := ctxT(t)

	if err := m1.Manage(ctx, memNames...); err == nil || !strings.Contains(err.Error(), "wildcard names need dns-01") {
		t.Fatalf("Manage of %d wildcards without dns-01: got %v, want their error", nMem, clipErr(err))
	}
	if err := e.ca.RateLimit("newOrder", time.Hour, -1); err != nil {
		t.Fatal(err)
	}
	if err := m1.Manage(ctx, storedNames...); !errors.Is(err, acme.ErrRateLimited) {
		t.Fatalf("Manage of %d names while the CA asks to wait an hour: got %v, want rateLimited", nStored, clipErr(err))
	}
	orders, failures := e.ca.Requests("newOrder"), failed.Load()
	if orders != nStored || failures != int64(len(all)) {
		t.Fatalf("got %d newOrder requests and %d failed attempts for %d names (%d of them wildcards), want %d and %d", orders, failures, len(all), nMem, nStored, len(all))
	}

	err := m1.Manage(ctx, all...)
	if !errors.Is(err, autotls.ErrBackoff) {
		t.Fatalf("Manage again: got %v, want ErrBackoff", clipErr(err))
	}
	if want := fmt.Sprintf("%d more names failed", len(all)-1000); !strings.Contains(err.Error(), want) {
		t.Errorf("Manage again does not say %q: %s", want, clipErr(err))
	}
	for _, name := range []string{storedNames[0], storedNames[nStored-1]} {
		if _, err := m1.GetCertificate(hello(name)); !errors.Is(err, autotls.ErrBackoff) {
			t.Errorf("handshake for %s: got %v, want ErrBackoff", name, err)
		}
	}
	if got, gotF := e.ca.Requests("newOrder"), failed.Load(); got != orders || gotF != failures {
		t.Fatalf("%d newOrder requests and %d failed attempts while every one of %d names backs off, want none: names were forgotten", got-orders, gotF-failures, len(all))
	}
	m1.Close()

	m2 := e.manager(t, store, mod)
	if err := m2.Manage(ctx, storedNames...); !errors.Is(err, autotls.ErrBackoff) {
		t.Fatalf("Manage after a restart: got %v, want ErrBackoff (the stored Retry-After)", clipErr(err))
	}
	if got := e.ca.Requests("newOrder"); got != orders {
		t.Fatalf("%d newOrder requests after a restart inside the stored Retry-After of every name, want none", got-orders)
	}
}
