package autotls_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/solvers"
	"github.com/tlsmint/tlsmint/solvers/dns01test"
	"github.com/tlsmint/tlsmint/storage"
)

func TestObtainCacheAndRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	store := storage.Dir(t.TempDir())
	var events []autotls.Event
	var evMu sync.Mutex
	scheduled := make(chan struct{}, 1)
	m := e.manager(t, store, func(m *autotls.Manager) {
		m.OnEvent = func(ev autotls.Event) {
			evMu.Lock()
			events = append(events, ev)
			evMu.Unlock()
			if ev.Type == autotls.EventScheduled {
				scheduled <- struct{}{}
			}
		}
	})
	addr := serve(t, m)

	leaf, err := e.handshake(ctxT(t), addr, "example.com")
	if err != nil {
		t.Fatalf("first handshake: %v", err)
	}
	if leaf.DNSNames[0] != "example.com" {
		t.Fatalf("got certificate for %v", leaf.DNSNames)
	}
	if got := e.ca.Requests("newOrder"); got != 1 {
		t.Fatalf("%d orders after the first handshake, want 1", got)
	}
	// The CA's renewal information is fetched and stored in the
	// background after issuance.
	select {
	case <-scheduled:
	case <-time.After(30 * time.Second):
		t.Fatal("no renewal information applied within 30s")
	}
	if got := e.ca.Requests("renewalInfo"); got != 1 {
		t.Fatalf("%d renewalInfo requests, want 1", got)
	}
	before := totalRequests(e.ca)
	leaf2, err := e.handshake(ctxT(t), addr, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if !leaf2.Equal(leaf) || totalRequests(e.ca) != before {
		t.Fatal("second handshake did not come from the cache")
	}
	evMu.Lock()
	if len(events) != 2 || events[0].Type != autotls.EventObtained || events[0].Name != "example.com" ||
		events[1].Type != autotls.EventScheduled || events[1].Reason != autotls.ReasonARI {
		t.Fatalf("events = %+v, want obtained, then scheduled by ARI", events)
	}
	evMu.Unlock()
	m.Close()

	// A new Manager over the same storage serves it without the CA.
	m2 := e.manager(t, store, nil)
	addr2 := serve(t, m2)
	leaf3, err := e.handshake(ctxT(t), addr2, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if !leaf3.Equal(leaf) {
		t.Fatal("restarted Manager served another certificate")
	}
	if got := totalRequests(e.ca); got != before {
		t.Fatalf("restarted Manager made %d CA requests, want 0", got-before)
	}
}

func TestConcurrentHandshakesOneOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	m := e.manager(t, nil, nil)
	addr := serve(t, m)

	// The first client hangs up at once; that must not cancel anything.
	quick, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	e.handshake(quick, addr, "www.example.com")

	const n = 200
	var wg sync.WaitGroup
	var failed atomic.Int32
	var firstErr atomic.Value
	for range n {
		wg.Go(func() {
			leaf, err := e.handshake(ctxT(t), addr, "www.example.com")
			if err != nil || leaf.DNSNames[0] != "www.example.com" {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d handshakes failed: %v", failed.Load(), n, firstErr.Load())
	}
	if got := e.ca.Requests("newOrder"); got != 1 {
		t.Fatalf("%d orders for one name, want 1", got)
	}
}

func TestHostileSNI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.Hosts = autotls.HostWhitelist("example.com", "bücher.example.com", "127.0.0.1")
	})
	label64 := "a123456789012345678901234567890123456789012345678901234567890123"
	name254 := label64[:63] + "." + label64[:63] + "." + label64[:63] + "." + label64[:61] + ".x"
	cases := []struct {
		name    string
		sni     string
		wantErr error // nil: a certificate for wantName
		want    string
	}{
		{"upper case", "EXAMPLE.COM", nil, "example.com"},
		{"trailing dot", "example.com.", nil, "example.com"},
		{"unicode", "BÜCHER.example.com", nil, "xn--bcher-kva.example.com"},
		{"punycode", "xn--bcher-kva.example.com", nil, "xn--bcher-kva.example.com"},
		{"wildcard", "*.example.com", autotls.ErrInvalidName, ""},
		{"IP while IPs are off", "127.0.0.1", autotls.ErrHostNotAllowed, ""},
		{"IPv6", "::1", autotls.ErrHostNotAllowed, ""},
		{"empty", "", autotls.ErrInvalidName, ""},
		{"64-character label", label64 + ".example.com", autotls.ErrInvalidName, ""},
		{"254-character name", name254, autotls.ErrInvalidName, ""},
		{"empty label", "a..b", autotls.ErrInvalidName, ""},
		{"NUL", "example.com\x00.evil", autotls.ErrInvalidName, ""},
		{"slash", "a/b", autotls.ErrInvalidName, ""},
		{"backslash", `a\b`, autotls.ErrInvalidName, ""},
		{"dot dot", "..", autotls.ErrInvalidName, ""},
		{"single label", "localhost", autotls.ErrInvalidName, ""},
		{"underscore", "a_b.example.com", autotls.ErrInvalidName, ""},
		{"not whitelisted", "other.example.net", autotls.ErrHostNotAllowed, ""},
	}
	// The names obtained earlier in the table have their renewal
	// information fetched in the background meanwhile: those requests
	// are not the refused names'.
	// One snapshot of every counter: reading the total and the excluded
	// counters apart would count a background request made in between.
	requests := func() int {
		n := 0
		for endpoint, v := range e.ca.RequestCounts() {
			if endpoint != "renewalInfo" && endpoint != "directory" {
				n += v
			}
		}
		return n
	}
	for _, tc := range cases {
		before := requests()
		cert, err := m.GetCertificate(hello(tc.sni))
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("%s: GetCertificate(%q) = %v, want %v", tc.name, tc.sni, err, tc.wantErr)
			}
			if got := requests(); got != before {
				t.Errorf("%s: %d CA requests for a refused name", tc.name, got-before)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: GetCertificate(%q): %v", tc.name, tc.sni, err)
			continue
		}
		if cert.Leaf.DNSNames[0] != tc.want {
			t.Errorf("%s: certificate for %v, want %s", tc.name, cert.Leaf.DNSNames, tc.want)
		}
	}
	if got := e.ca.Requests("newOrder"); got != 2 {
		t.Fatalf("%d orders, want 2 (example.com and the IDN)", got)
	}
	// Every refusal is counted by its reason.
	want := autotls.Refusals{NoServerName: 1, InvalidName: 10, NotAllowed: 3}
	if got := m.Refusals(); got != want {
		t.Fatalf("Refusals() = %+v, want %+v", got, want)
	}
}

func TestIPCertificates(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.AllowIPCertificates = true
		m.Hosts = autotls.HostWhitelist("127.0.0.1")
	})
	cert, err := m.GetCertificate(hello("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.Leaf.IPAddresses) != 1 || cert.Leaf.IPAddresses[0].String() != "127.0.0.1" {
		t.Fatalf("IPs = %v", cert.Leaf.IPAddresses)
	}
	if _, err := m.GetCertificate(hello("127.0.0.2")); !errors.Is(err, autotls.ErrHostNotAllowed) {
		t.Fatalf("unlisted IP: %v", err)
	}
}

func TestRandomSNIFloodStrictPolicy(t *testing.T) {
	// Not parallel: it measures the process's heap.
	e := newEnv(t, testpebble.Options{})
	m := e.manager(t, nil, nil)
	// Warm up so lazily created state does not count.
	m.GetCertificate(hello("warm.example.net"))
	e.ca.ResetCounts()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	g0 := len(managerGoroutines())
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 2500 {
				name := "r" + itoa(w) + "x" + itoa(i) + ".random.example.net"
				if _, err := m.GetCertificate(hello(name)); !errors.Is(err, autotls.ErrHostNotAllowed) {
					t.Errorf("%s: %v", name, err)
					return
				}
			}
		})
	}
	wg.Wait()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if got := totalRequests(e.ca); got != 0 {
		t.Fatalf("%d CA requests for 20000 refused names", got)
	}
	// Remembering anything per refused name would cost well over 50 bytes
	// each; 1 MiB for 20,000 names leaves room for the runtime's noise.
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 1<<20 {
		t.Fatalf("heap grew by %d bytes after 20000 refused names", grew)
	}
	// No refused name left a goroutine of the Manager behind (counted at
	// once: the test's own workers, still exiting, are not counted).
	if g := managerGoroutines(); len(g) > g0 {
		t.Fatalf("the Manager's goroutines %d -> %d:\n%s", g0, len(g), strings.Join(g, "\n\n"))
	}
}

func TestOnDemandRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	var asked atomic.Int32
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.Hosts = nil
		m.OnDemand = &autotls.OnDemand{
			Decide: func(_ context.Context, name string, _ net.Addr) error {
				asked.Add(1)
				return nil
			},
			RateLimit:    3,
			RateInterval: time.Hour,
			MaxInFlight:  2,
		}
	})
	addr := serve(t, m)
	var wg sync.WaitGroup
	var ok, limited atomic.Int32
	for i := range 60 {
		wg.Go(func() {
			start := time.Now()
			_, err := e.handshake(ctxT(t), addr, "od"+itoa(i)+".example.net")
			if err == nil {
				ok.Add(1)
				return
			}
			limited.Add(1)
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("a refused handshake took %v", took)
			}
		})
	}
	wg.Wait()
	if got := e.ca.Requests("newOrder"); got > 3 || got < 1 {
		t.Fatalf("%d on-demand orders, want 1 to 3 (the rate limit)", got)
	}
	if int(ok.Load()) != e.ca.Requests("newOrder") || limited.Load() == 0 {
		t.Fatalf("%d handshakes got certificates, %d were refused; %d orders", ok.Load(), limited.Load(), e.ca.Requests("newOrder"))
	}
	if asked.Load() < 60 {
		t.Fatalf("decision function asked %d times, want 60", asked.Load())
	}
	if got := m.Refusals(); got != (autotls.Refusals{OnDemandLimited: uint64(limited.Load())}) {
		t.Fatalf("Refusals() = %+v, want %d on-demand-limited", got, limited.Load())
	}
}

func TestOnDemandDecisionRefuses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.Hosts = nil
		m.OnDemand = &autotls.OnDemand{Decide: func(context.Context, string, net.Addr) error { return errors.New("not a customer") }}
	})
	_, err := m.GetCertificate(hello("nope.example.net"))
	if !errors.Is(err, autotls.ErrHostNotAllowed) {
		t.Fatalf("got %v, want ErrHostNotAllowed", err)
	}
	if got := totalRequests(e.ca); got != 0 {
		t.Fatalf("%d CA requests", got)
	}
}

func TestNoPolicyOrdersNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	m := e.manager(t, nil, func(m *autotls.Manager) { m.Hosts = nil })
	_, err := m.GetCertificate(hello("example.com"))
	if !errors.Is(err, autotls.ErrHostNotAllowed) {
		t.Fatalf("got %v", err)
	}
	if got := totalRequests(e.ca); got != 0 {
		t.Fatalf("%d CA requests", got)
	}
}

func TestFailingValidationBacksOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	e.failHost.Store("example.com")
	var failures atomic.Int32
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.DisableTLSALPN01 = true
		m.OnEvent = func(ev autotls.Event) {
			if ev.Type == autotls.EventFailed {
				failures.Add(1)
			}
		}
	})
	_, err := m.GetCertificate(hello("example.com"))
	if err == nil {
		t.Fatal("validation that cannot succeed succeeded")
	}
	start := time.Now()
	for range 50 {
		_, err := m.GetCertificate(hello("example.com"))
		if !errors.Is(err, autotls.ErrBackoff) {
			t.Fatalf("got %v, want ErrBackoff", err)
		}
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("50 handshakes in backoff took %v", took)
	}
	if got := e.ca.Requests("newOrder"); got != 1 {
		t.Fatalf("%d orders for a failing name, want 1", got)
	}
	if failures.Load() != 1 {
		t.Fatalf("%d failure events, want 1", failures.Load())
	}
}

func TestSharedFileStorageOneOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	store := storage.Dir(t.TempDir())
	testSharedStorage(t, e, store, store)
}

// testSharedStorage runs two Managers over the given stores (the same data)
// with concurrent handshakes for the same names.
func testSharedStorage(t *testing.T, e *env, s1, s2 storage.Storage) {
	t.Helper()
	// Both Managers solve http-01 through tokens in the shared storage, so
	// whichever serves the CA's request can answer.
	mod := func(m *autotls.Manager) { m.DisableTLSALPN01 = true }
	m1 := e.manager(t, s1, mod)
	m2 := e.manager(t, s2, mod)
	a1, a2 := serve(t, m1), serve(t, m2)
	names := []string{"example.com", "a.example.com", "b.example.com"}
	var wg sync.WaitGroup
	var failed atomic.Int32
	for _, n := range names {
		for _, addr := range []string{a1, a2, a1, a2} {
			wg.Go(func() {
				if _, err := e.handshake(ctxT(t), addr, n); err != nil {
					t.Logf("%s via %s: %v", n, addr, err)
					failed.Add(1)
				}
			})
		}
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d handshakes failed", failed.Load())
	}
	if got := e.ca.Requests("newOrder"); got != len(names) {
		t.Fatalf("%d orders for %d names across two Managers, want one each", got, len(names))
	}
	if got := e.ca.Requests("newAccount"); got != 1 {
		t.Fatalf("%d accounts registered, want 1 shared", got)
	}
}

// managerGoroutines returns the stacks of the goroutines running code of
// package autotls (the Manager's loops, workers, flights), other than the
// caller's: a count that other tests' goroutines (Pebble's, idle HTTP
// connections, goroutines still ending) do not change.
func managerGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		// Methods of the package's types, and the goroutines they
		// start; not its internal tests waiting to run in parallel.
		if i > 0 && strings.Contains(g, "github.com/tlsmint/tlsmint/autotls.(*") && !strings.Contains(g, "testing.(*T).Parallel") {
			out = append(out, g)
		}
	}
	return out
}

// Close stops and waits for every goroutine of the Manager: none runs
// once it returns, counted among the Manager's goroutines rather than
// against a baseline of the process's. (Not parallel: the
// parallel tests' Managers would be counted too; the Managers of earlier
// tests are closed.)
func TestCloseLeavesNoGoroutines(t *testing.T) {
	e := newEnv(t, testpebble.Options{})
	m := e.manager(t, nil, nil)
	if _, err := m.GetCertificate(hello("example.com")); err != nil {
		t.Fatal(err)
	}
	if n := len(managerGoroutines()); n == 0 {
		t.Fatal("no goroutine of the Manager counted before Close, want its schedule's loop at least")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.GetCertificate(hello("new.example.com")); !errors.Is(err, autotls.ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}
	// The cached certificate is still served.
	if _, err := m.GetCertificate(hello("example.com")); err != nil {
		t.Fatalf("cached certificate after Close: %v", err)
	}
	// A goroutine Close waited for may still be returning from the
	// function that told it so (a deferred Done): its exit is given a
	// moment, not a count to come down to.
	mine := managerGoroutines()
	for deadline := time.Now().Add(5 * time.Second); len(mine) > 0 && time.Now().Before(deadline); mine = managerGoroutines() {
		time.Sleep(time.Millisecond)
	}
	if len(mine) > 0 {
		t.Fatalf("%d goroutines of the Manager after Close:\n%s", len(mine), strings.Join(mine, "\n\n"))
	}
}

func TestRenewal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{Profiles: map[string]time.Duration{"tiny": 3 * time.Second}})
	renewed := make(chan autotls.Event, 4)
	var dbg syncBuffer
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.Issuers[0].Profile = "tiny"
		m.Logger = slog.New(slog.NewTextHandler(&dbg, nil))
		m.OnEvent = func(ev autotls.Event) {
			if ev.Type == autotls.EventRenewed {
				renewed <- ev
			}
		}
	})
	first, err := m.GetCertificate(hello("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-renewed:
		if ev.Name != "example.com" {
			t.Fatalf("renewed %q", ev.Name)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no renewal within 30s of a 3s certificate\n%s", dbg.String())
	}
	second, err := m.GetCertificate(hello("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if second.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 {
		t.Fatal("still serving the old certificate after renewal")
	}
}

func TestManageAndWildcard(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	e.ca.DNS().AddZone("example.com")
	e.ca.DNS().AddZone("example.org")
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.Hosts = nil
		m.DNS01 = &solvers.DNS01{
			Provider:           &dns01test.Provider{Server: e.ca.DNS()},
			Resolvers:          []string{e.ca.DNS().Addr()},
			NameserverPort:     dnsPort(t, e.ca.DNS().Addr()),
			PropagationTimeout: 5 * time.Second,
			PollInterval:       20 * time.Millisecond,
		}
	})
	if err := m.Manage(ctxT(t), "*.example.com", "www.example.org"); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	for _, sni := range []string{"a.example.com", "b.example.com", "www.example.org"} {
		c, err := m.GetCertificate(hello(sni))
		if err != nil {
			t.Fatalf("%s: %v", sni, err)
		}
		if c == nil {
			t.Fatalf("%s: no certificate", sni)
		}
	}
	// A name one label deeper is not covered, and not allowed (no policy).
	if _, err := m.GetCertificate(hello("x.a.example.com")); !errors.Is(err, autotls.ErrHostNotAllowed) {
		t.Fatalf("x.a.example.com: %v", err)
	}
	if got := e.ca.Requests("newOrder"); got != 2 {
		t.Fatalf("%d orders, want 2", got)
	}
}

// A renewal that fails (on the test clock, when a 6-day certificate is
// due) leaves the certificate served, and its failure recorded with it in
// storage.
func TestRenewalFailureKeepsServingAndIsRecorded(t *testing.T) {
	t.Parallel()
	c := newClockedEnv(t, testpebble.Options{Profiles: map[string]time.Duration{"tiny": 6 * day}}, nil)
	ev := &clockEvents{clk: c.clk}
	store := storage.NewMemory()
	m := c.env.manager(t, store, func(m *autotls.Manager) {
		m.Issuers[0].Profile = "tiny"
		m.DisableTLSALPN01 = true
		m.OnEvent = ev.on
		autotls.SetFakeClockForTest(m, c.clk)
	})
	first := c.serving(t, m, "example.com")
	// Renewals cannot validate from now on.
	c.failHost.Store("example.com")
	for len(ev.of(autotls.EventFailed)) == 0 {
		c.advance(t, time.Hour, m)
		if c.clk.Now().After(first.NotAfter) {
			t.Fatalf("no failed renewal in the certificate's life; events %s", ev)
		}
	}
	if f := ev.of(autotls.EventFailed)[0]; f.RetryAt.IsZero() || f.Err == nil {
		t.Fatalf("failure event = %+v", f.Event)
	}
	if n := len(ev.of(autotls.EventRenewed)); n != 0 {
		t.Fatalf("%d renewals while validation fails", n)
	}
	// The certificate is still served while it is valid.
	if cur := c.serving(t, m, "example.com"); !cur.Equal(first) {
		t.Fatalf("after a failed renewal: serial %x, want the first certificate's %x", cur.SerialNumber, first.SerialNumber)
	}
	keys, _ := store.List(ctxT(t), "certificates")
	if len(keys) != 1 {
		t.Fatalf("stored keys %v", keys)
	}
	b, _ := store.Load(ctxT(t), keys[0])
	if !strings.Contains(string(b), `"last_failure"`) {
		t.Fatalf("stored value does not record the failure: %s", b)
	}
}

func TestHandshakeGivesUpWhileIssuanceGoesOn(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	m := e.manager(t, nil, func(m *autotls.Manager) { m.HandshakeTimeout = time.Millisecond })
	_, err := m.GetCertificate(hello("example.com"))
	if !errors.Is(err, autotls.ErrIssuancePending) {
		t.Fatalf("first handshake: %v, want ErrIssuancePending", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := m.GetCertificate(hello("example.com"))
		if err == nil && c != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the issuance did not finish after the handshake gave up: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := e.ca.Requests("newOrder"); got != 1 {
		t.Fatalf("%d orders, want 1", got)
	}
}
