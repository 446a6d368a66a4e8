package autotls_test

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// errGone is what the test policies answer for a name they no longer
// allow.
var errGone = errors.New("the customer removed this domain")

// TestNoRenewalOnceRefused: a name obtained on demand whose decision now
// refuses it is not renewed — no order, EventNotRenewed — while its
// certificate is served until it expires; at expiry the decision is asked
// once more and the name is forgotten. A name given to Manage is renewed
// whatever the policy says.
func TestNoRenewalOnceRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	var allowed atomic.Bool
	allowed.Store(true)
	var asked atomic.Int32
	var clientSeen atomic.Bool
	ev := newEventLog()
	var offset atomic.Int64
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.Hosts = nil
		m.OnDemand = &autotls.OnDemand{Decide: func(_ context.Context, name string, client net.Addr) error {
			asked.Add(1)
			if client != nil {
				clientSeen.Store(true)
			}
			if allowed.Load() {
				return nil
			}
			return errGone
		}}
		m.OnEvent = ev.on
	})
	autotls.SetClockForTest(m, func() time.Time { return time.Now().Add(time.Duration(offset.Load())) })
	if err := m.Manage(ctxT(t), "kept.example.com"); err != nil {
		t.Fatal(err)
	}
	addr := serve(t, m)
	leaf, err := e.handshake(ctxT(t), addr, "gone.example.com")
	if err != nil {
		t.Fatalf("on-demand handshake: %v", err)
	}
	if !clientSeen.Load() {
		t.Error("the handshake's decision did not see the client's address")
	}

	allowed.Store(false)
	types := []autotls.EventType{autotls.EventRenewed, autotls.EventObtained, autotls.EventReplaced, autotls.EventFailed}
	before := map[autotls.EventType]int{}
	for _, typ := range types {
		before[typ] = ev.count(typ, "gone.example.com")
	}
	orders := e.ca.Requests("newOrder")
	asked.Store(0)
	err = autotls.RenewForTest(m, "gone.example.com")
	if !errors.Is(err, errGone) || !errors.Is(err, autotls.ErrHostNotAllowed) {
		t.Fatalf("renewal of a refused name: %v, want the decision's error", err)
	}
	if n := asked.Load(); n != 1 {
		t.Errorf("the decision was asked %d times for the renewal, want 1", n)
	}
	nr := ev.next(t, autotls.EventNotRenewed, "gone.example.com", 5*time.Second)
	if !errors.Is(nr.Err, errGone) || nr.Serial != serialHex(leaf) || !nr.NotAfter.Equal(leaf.NotAfter) {
		t.Errorf("not_renewed event %+v, want the decision's error and the certificate served", nr)
	}
	if got, err := e.handshake(ctxT(t), addr, "gone.example.com"); err != nil || serialHex(got) != serialHex(leaf) {
		t.Errorf("after the refused renewal: %v; want the same certificate served until it expires", err)
	}
	if !autotls.PlannedAtForTest(m, "gone.example.com") {
		t.Error("the refused name has no plan: its expiry would go unnoticed")
	}
	// The name given to Manage is renewed although the decision refuses
	// everything now.
	if err := autotls.RenewForTest(m, "kept.example.com"); err != nil {
		t.Fatalf("renewing a managed name: %v", err)
	}
	if n := e.ca.Requests("newOrder") - orders; n != 1 {
		t.Errorf("%d orders, want 1 (the managed name's)", n)
	}

	// At expiry: asked once more, forgotten, no order.
	offset.Store(int64(time.Until(leaf.NotAfter) + time.Minute))
	deadline := time.Now().Add(10 * time.Second)
	for ev.count(autotls.EventNotRenewed, "gone.example.com") < 2 && time.Now().Before(deadline) {
		autotls.RunDueForTest(m, time.Now().Add(time.Duration(offset.Load())))
		time.Sleep(10 * time.Millisecond)
	}
	if n := ev.count(autotls.EventNotRenewed, "gone.example.com"); n != 2 {
		t.Fatalf("%d not_renewed events, want 2 (the renewal, the expiry)", n)
	}
	waitFor(t, "the refused name to be forgotten", func() bool {
		return !autotls.PlannedAtForTest(m, "gone.example.com") && !autotls.CachedForTest(m, "gone.example.com")
	})
	// The managed name is renewed meanwhile (its renewal is due too);
	// the refused one is neither renewed nor attempted.
	for _, typ := range types {
		if n := ev.count(typ, "gone.example.com") - before[typ]; n != 0 {
			t.Errorf("%d %s events for the refused name, want none", n, typ)
		}
	}
}

// TestNoRenewalAfterRestartOnceRefused: a restarted Manager whose host
// policy no longer allows a stored name does not renew it when it comes
// due (it is planned from the index, not in memory), asks again later,
// and keeps the stored certificate.
func TestNoRenewalAfterRestartOnceRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	store, info := storeOne(t, e, "www.example.org", nil)

	ev := newEventLog()
	clk := autotls.NewFakeClock(time.Now())
	m := e.manager(t, store, func(m *autotls.Manager) {
		m.Hosts = autotls.HostWhitelist("example.com") // www.example.org is gone
		m.OnEvent = ev.on
		autotls.SetFakeClockForTest(m, clk)
	})
	m.TLSConfig()
	waitDiscovered(t, m)
	if !autotls.PlannedAtForTest(m, "www.example.org") {
		t.Fatal("the stored name was not planned from the index")
	}
	orders := e.ca.Requests("newOrder")
	// At once to a minute past the renewal time, on the test clock (a
	// first ARI look on the way would move the renewal by the CA's
	// window).
	if err := clk.Jump(info.RenewAt.Add(time.Minute).Sub(clk.Now()), m); err != nil {
		t.Fatal(err)
	}
	if n := ev.count(autotls.EventNotRenewed, "www.example.org"); n != 1 {
		t.Fatalf("%d not_renewed events, want 1; events %s", n, ev)
	}
	nr := ev.next(t, autotls.EventNotRenewed, "www.example.org", time.Second)
	if !errors.Is(nr.Err, autotls.ErrHostNotAllowed) {
		t.Errorf("not_renewed: %v, want ErrHostNotAllowed", nr.Err)
	}
	// Not in memory, still valid: the policy is asked again later (it may
	// have failed for a moment), nothing is ordered.
	if !autotls.PlannedAtForTest(m, "www.example.org") {
		t.Error("the refused name is not planned for another look")
	}
	if n := e.ca.Requests("newOrder") - orders; n != 0 {
		t.Errorf("%d orders for a name the policy refuses, want none", n)
	}
	after, err := m.Certificates(ctxT(t))
	if err != nil || len(after) != 1 || after[0].Serial != info.Serial {
		t.Errorf("stored certificates after: %+v, %v; want the old one kept", after, err)
	}
}

// waitFor waits up to ten seconds for cond.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRefusedRenewalAskedAgain: a policy that refused a renewal for a
// moment (its database did not answer) is asked again after an eighth of
// the time left, and the certificate is renewed then.
func TestRefusedRenewalAskedAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	var allowed atomic.Bool
	allowed.Store(true)
	ev := newEventLog()
	var offset atomic.Int64
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.Hosts = func(context.Context, string) error {
			if allowed.Load() {
				return nil
			}
			return errors.New("policy database timed out")
		}
		m.OnEvent = ev.on
	})
	autotls.SetClockForTest(m, func() time.Time { return time.Now().Add(time.Duration(offset.Load())) })
	leaf, err := e.handshake(ctxT(t), serve(t, m), "flaky.example.com")
	if err != nil {
		t.Fatal(err)
	}
	// The renewal time the CA's renewal information set, after issuance.
	renewAt := ev.next(t, autotls.EventScheduled, "flaky.example.com", 10*time.Second).RenewAt
	runUntil := func(typ autotls.EventType) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for ev.count(typ, "flaky.example.com") == 0 && time.Now().Before(deadline) {
			autotls.RunDueForTest(m, time.Now().Add(time.Duration(offset.Load())))
			time.Sleep(10 * time.Millisecond)
		}
	}
	// The renewal comes due while the policy fails.
	allowed.Store(false)
	offset.Store(int64(time.Until(renewAt) + time.Minute))
	runUntil(autotls.EventNotRenewed)
	ev.next(t, autotls.EventNotRenewed, "flaky.example.com", time.Second)
	// The policy answers again; an eighth of the time left later the
	// renewal goes ahead.
	allowed.Store(true)
	offset.Add(int64(leaf.NotAfter.Sub(renewAt)/8 + time.Hour))
	runUntil(autotls.EventRenewed)
	if r := ev.next(t, autotls.EventRenewed, "flaky.example.com", time.Second); r.Serial == serialHex(leaf) {
		t.Fatal("renewed to the same serial")
	}
	if n := ev.count(autotls.EventNotRenewed, "flaky.example.com"); n != 1 {
		t.Errorf("%d not_renewed events, want 1", n)
	}
}
