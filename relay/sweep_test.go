package relay_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/relay"
)

// testClock is a clock a test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *testClock) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// keysUnder returns the stored keys with prefix.
func (e *env) keysUnder(t testing.TB, prefix string) []string {
	t.Helper()
	keys, err := e.store.List(ctxT(t), prefix)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestSweep: orders that ended without a certificate go, with their
// authorizations and index keys, once their retention after expiry
// passed; rate records once their window passed; an issued certificate
// with its order, authorization, ARI key and index row once its
// retention after NotAfter passed — and nothing before. A second
// replica's sweep while one runs does nothing.
func TestSweep(t *testing.T) {
	t.Parallel()
	clock := &testClock{t: time.Now()}
	e := newEnv(t, envOptions{modify: func(s *relay.Server) {
		relay.SetClock(s, clock.now)
		s.Retention.SweepInterval = -1
	}})
	ctx := ctxT(t)
	c := e.registered(t)
	abandoned, err := c.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("abandoned.example.com")})
	if err != nil {
		t.Fatal(err)
	}
	invalid, err := c.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("invalid.example.com")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeactivateAuthorization(ctx, &acme.Authorization{URL: invalid.Authorizations[0]}); err != nil {
		t.Fatal(err)
	}
	cert, err := e.obtain(t, c, acme.DNSNames("kept.example.com"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"relay/orders/", "relay/authz/", "relay/certs/", "relay/ari/", "relay/account-order/", "relay/sweep/", "relay/current/", "relay/rate-account/"} {
		if len(e.keysUnder(t, p)) == 0 {
			t.Fatalf("nothing under %s before the sweep", p)
		}
	}
	sweep := func() relay.SweepStats {
		t.Helper()
		st, err := e.srv.Sweep(ctx)
		if err != nil {
			t.Fatalf("Sweep: %v", err)
		}
		return st
	}
	if st := sweep(); st.Orders+st.Certificates+st.RateRecords != 0 {
		t.Fatalf("a sweep at once deleted %+v, want nothing", st)
	}
	// Another replica's sweep while this one holds the lock: nothing.
	unlock, err := e.store.Lock(ctx, "relay/lock/sweep")
	if err != nil {
		t.Fatal(err)
	}
	clock.advance(relay.OrderLifetime + relay.DefaultOrderRetention + time.Minute)
	other := &relay.Server{Storage: e.store, Upstreams: e.srv.Upstreams, Retention: relay.Retention{SweepInterval: -1}}
	t.Cleanup(func() { other.Close() })
	if st, err := other.Sweep(ctx); err != nil || st != (relay.SweepStats{}) {
		t.Fatalf("a sweep while another runs: %+v, %v; want nothing", st, err)
	}
	unlock()

	st := sweep()
	if st.Orders != 2 || st.Authorizations != 2 || st.Certificates != 0 || st.Rescheduled != 1 || st.RateRecords < 2 {
		t.Fatalf("after the orders' retention: %+v; want the abandoned and the invalid order with their authorizations, the valid one rescheduled, the rate records", st)
	}
	for _, u := range []string{abandoned.URL, invalid.URL} {
		id := u[strings.LastIndexByte(u, '/')+1:]
		for _, k := range append(e.keysUnder(t, "relay/orders/"+id), e.keysUnder(t, "relay/account-order/")...) {
			if strings.Contains(k, id) {
				t.Errorf("%s left after the sweep", k)
			}
		}
	}
	if len(e.keysUnder(t, "relay/certs/")) != 1 || len(e.keysUnder(t, "relay/orders/")) != 1 {
		t.Fatal("the valid order or its certificate went before its retention")
	}
	if st := sweep(); st.Orders+st.Certificates+st.Rescheduled != 0 {
		t.Fatalf("a second sweep did %+v, want nothing (the valid order is not due)", st)
	}

	clock.advance(cert.Leaf().NotAfter.Add(relay.DefaultCertificateRetention + time.Minute).Sub(clock.now()))
	if st := sweep(); st.Orders != 1 || st.Certificates != 1 || st.Authorizations != 1 {
		t.Fatalf("after the certificate's retention: %+v; want its order, authorization and certificate", st)
	}
	for _, p := range []string{"relay/orders/", "relay/authz/", "relay/certs/", "relay/ari/", "relay/account-order/", "relay/sweep/", "relay/current/", "relay/rate-account/", "relay/rate/"} {
		if keys := e.keysUnder(t, p); len(keys) != 0 {
			t.Errorf("%v left under %s", keys, p)
		}
	}
	if infos, err := e.srv.Certificates(ctx); err != nil || len(infos) != 0 {
		t.Errorf("Certificates after the sweep: %+v, %v; want none", infos, err)
	}
	// The account is still there and may order again.
	if _, err := c.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("again.example.com")}); err != nil {
		t.Fatalf("ordering after the sweep: %v", err)
	}
}

// TestSweepBackground: with a SweepInterval, the Server sweeps by itself.
func TestSweepBackground(t *testing.T) {
	t.Parallel()
	clock := &testClock{t: time.Now()}
	e := newEnv(t, envOptions{modify: func(s *relay.Server) {
		relay.SetClock(s, clock.now)
		s.Retention = relay.Retention{SweepInterval: 20 * time.Millisecond, Orders: time.Hour}
	}})
	c := e.registered(t)
	if _, err := c.NewOrder(ctxT(t), acme.OrderRequest{Identifiers: acme.DNSNames("bg.example.com")}); err != nil {
		t.Fatal(err)
	}
	clock.advance(relay.OrderLifetime + 2*time.Hour)
	ctx, cancel := context.WithTimeout(ctxT(t), 10*time.Second)
	defer cancel()
	for len(e.keysUnder(t, "relay/orders/")) != 0 {
		select {
		case <-ctx.Done():
			t.Fatal("the background sweeper did not delete the expired order")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestSweepOlderStorage: orders stored before the sweep index existed
// are put in it by the first sweep, and swept as the others.
func TestSweepOlderStorage(t *testing.T) {
	t.Parallel()
	clock := &testClock{t: time.Now()}
	e := newEnv(t, envOptions{modify: func(s *relay.Server) {
		relay.SetClock(s, clock.now)
		s.Retention.SweepInterval = -1
	}})
	c := e.registered(t)
	for range 3 {
		if _, err := c.NewOrder(ctxT(t), acme.OrderRequest{Identifiers: acme.DNSNames("old.example.com")}); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range e.keysUnder(t, "relay/sweep") { // as an older relay left the storage
		e.store.Delete(ctxT(t), k)
	}
	clock.advance(relay.OrderLifetime + relay.DefaultOrderRetention + time.Minute)
	st, err := e.srv.Sweep(ctxT(t))
	if err != nil || st.Orders != 3 {
		t.Fatalf("Sweep: %+v, %v; want the 3 orders", st, err)
	}
	if len(e.keysUnder(t, "relay/orders/")) != 0 {
		t.Fatal("orders left")
	}
}
