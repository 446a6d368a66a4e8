package autotls_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/storage"
)

// rewrite returns a Wrap that passes responses on paths with prefix
// through edit before they reach the client.
func rewrite(prefix string, edit func(rec *httptest.ResponseRecorder) []byte) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasPrefix(r.URL.Path, prefix) {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			body := edit(rec)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Del("Content-Length")
			w.WriteHeader(rec.Code)
			w.Write(body)
		})
	}
}

// A certificate of a few seconds renews again and again while clients
// keep handshaking, and no handshake ever gets an expired certificate. The
// lifetime leaves each renewal (due at half of it) eight seconds to
// finish, also under -race on a loaded machine (with 8 s certificates one
// stress run saw a renewal miss the expiry).
func TestRenewsWithoutGap(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{Profiles: map[string]time.Duration{"short": 16 * time.Second}})
	ev := newEventLog()
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.Issuers[0].Profile = "short"
		m.OnEvent = ev.on
	})
	addr := serve(t, m)
	first, err := e.handshake(ctxT(t), addr, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	serials := map[string]bool{first.SerialNumber.String(): true}
	deadline := time.Now().Add(45 * time.Second)
	for len(serials) < 3 && time.Now().Before(deadline) {
		leaf, err := e.handshake(ctxT(t), addr, "example.com")
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		if now := time.Now(); !now.Before(leaf.NotAfter) {
			t.Fatalf("served a certificate that expired at %v (now %v)", leaf.NotAfter, now)
		}
		serials[leaf.SerialNumber.String()] = true
		time.Sleep(100 * time.Millisecond) // the clients' pace, not synchronisation
	}
	if len(serials) < 3 {
		t.Fatalf("served %d certificates in 45s of a 16s profile, want at least 3 (two renewals); events %s", len(serials), ev)
	}
}

// Revocation at the CA moves its ARI window into the past: the next ARI
// poll renews at once, with replaces naming the revoked certificate.
func TestRevocationReplaced(t *testing.T) {
	t.Parallel()
	var orders orderLog
	shortRetry := rewrite("/draft-ietf-acme-ari-03/renewalInfo", func(rec *httptest.ResponseRecorder) []byte {
		rec.Header().Set("Retry-After", "1")
		return rec.Body.Bytes()
	})
	e := newEnv(t, testpebble.Options{Wrap: func(h http.Handler) http.Handler { return orders.wrap(shortRetry(h)) }})
	ev := newEventLog()
	var logs syncBuffer
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.OnEvent = ev.on
		m.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	autotls.SetMinARIPollForTest(m, time.Second)
	first, err := m.GetCertificate(hello("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if s := ev.next(t, autotls.EventScheduled, "example.com", 30*time.Second); s.Reason != autotls.ReasonARI {
		t.Fatalf("scheduled by %q, want ari", s.Reason)
	}
	if err := e.ca.Revoke(first.Leaf, acme.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	renewed := ev.next(t, autotls.EventReplaced, "example.com", 30*time.Second)
	id, _ := acme.CertificateID(first.Leaf)
	if got := orders.lastReplaces(); got != id {
		t.Fatalf("renewal order replaces %q, want %q", got, id)
	}
	cur, err := m.GetCertificate(hello("example.com"))
	if err != nil || cur.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 || renewed.Serial == "" {
		t.Fatalf("after revocation: got %v, want a new certificate served", err)
	}
}

// An ARI answer whose window ends after expiry is ignored: the Manager's
// own schedule stays.
func TestMalformedARIOwnSchedule(t *testing.T) {
	t.Parallel()
	late := rewrite("/draft-ietf-acme-ari-03/renewalInfo", func(rec *httptest.ResponseRecorder) []byte {
		return []byte(`{"suggestedWindow":{"start":"2099-01-01T00:00:00Z","end":"2099-01-02T00:00:00Z"}}`)
	})
	e := newEnv(t, testpebble.Options{Wrap: late})
	m := e.manager(t, nil, nil)
	if _, err := m.GetCertificate(hello("example.com")); err != nil {
		t.Fatal(err)
	}
	// Wait for the poll to have been applied (its next poll is set).
	var info record.Certificate
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		infos, err := m.Certificates(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(infos) == 1 && !infos[0].ARIWindowStart.IsZero() {
			info = infos[0]
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if info.ARIWindowStart.IsZero() {
		t.Fatal("the ARI answer was never recorded")
	}
	if info.RenewReason != autotls.ReasonSchedule || !info.RenewAt.Before(info.NotAfter) {
		t.Fatalf("renewal at %v by %q, want the Manager's own schedule before %v", info.RenewAt, info.RenewReason, info.NotAfter)
	}
}

// The CA answers 503 to everything during a renewal: the old certificate
// is served throughout, attempts back off, and the renewal succeeds once
// the CA is back.
func TestCADown503DuringRenewal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{Profiles: map[string]time.Duration{"short": 30 * time.Second}})
	ev := newEventLog()
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.Issuers[0].Profile = "short"
		m.FailureBackoff = 300 * time.Millisecond
		m.OnEvent = ev.on
	})
	first, err := m.GetCertificate(hello("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ca.SetDown(testpebble.Down503); err != nil {
		t.Fatal(err)
	}
	f1 := ev.next(t, autotls.EventFailed, "example.com", 30*time.Second)
	f2 := ev.next(t, autotls.EventFailed, "example.com", 30*time.Second)
	if !f2.RetryAt.After(f1.RetryAt) {
		t.Errorf("retries at %v then %v, want later and later", f1.RetryAt, f2.RetryAt)
	}
	if cur, err := m.GetCertificate(hello("example.com")); err != nil || cur != first {
		t.Fatalf("while the CA is down: got %v, want the old certificate", err)
	}
	if err := e.ca.SetDown(testpebble.Up); err != nil {
		t.Fatal(err)
	}
	ev.next(t, autotls.EventRenewed, "example.com", 30*time.Second)
	if cur, _ := m.GetCertificate(hello("example.com")); cur == first {
		t.Fatal("the renewed certificate is not served")
	}
}

// A 429 with Retry-After is obeyed — and stored, so a restarted Manager and
// a second one on the same storage make no order before that time.
func TestRateLimitStored(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	if err := e.ca.RateLimit("newOrder", time.Hour, -1); err != nil {
		t.Fatal(err)
	}
	store := storage.Dir(t.TempDir())
	ev := newEventLog()
	m1 := e.manager(t, store, func(m *autotls.Manager) { m.OnEvent = ev.on })
	err := m1.Manage(ctxT(t), "www.example.org")
	if !errors.Is(err, acme.ErrRateLimited) {
		t.Fatalf("first Manage: got %v, want rateLimited", err)
	}
	rl := ev.next(t, autotls.EventRateLimited, "www.example.org", 10*time.Second)
	if d := time.Until(rl.RetryAt); d < 50*time.Minute {
		t.Fatalf("rate limited until %v, want about an hour from now", rl.RetryAt)
	}
	m1.Close()
	orders := e.ca.Requests("newOrder")
	for i, m := range []*autotls.Manager{e.manager(t, store, nil), e.manager(t, store, nil)} {
		if err := m.Manage(ctxT(t), "www.example.org"); !errors.Is(err, autotls.ErrBackoff) {
			t.Fatalf("Manager %d after the restart: got %v, want ErrBackoff", i+2, err)
		}
	}
	if got := e.ca.Requests("newOrder"); got != orders {
		t.Fatalf("%d newOrder requests inside the Retry-After window, want 0", got-orders)
	}
}

// failingStore fails every Store of a certificate while fail is set.
type failingStore struct {
	storage.Storage
	fail atomic.Bool
}

func (s *failingStore) Store(ctx context.Context, key string, value []byte) error {
	if s.fail.Load() && strings.HasPrefix(key, "certificates/") {
		return errors.New("disk full")
	}
	return s.Storage.Store(ctx, key, value)
}

// A certificate whose Store failed is served from memory and stored once
// storage recovers, without a second order.
func TestFailedStoreRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	store := &failingStore{Storage: storage.NewMemory()}
	store.fail.Store(true)
	ev := newEventLog()
	m := e.manager(t, store, func(m *autotls.Manager) {
		m.FailureBackoff = 200 * time.Millisecond
		m.OnEvent = ev.on
	})
	if err := m.Manage(ctxT(t), "www.example.org"); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	ev.next(t, autotls.EventNotStored, "www.example.org", 10*time.Second)
	infos, err := m.Certificates(ctxT(t))
	if err != nil || len(infos) != 1 || infos[0].Stored || !infos[0].InMemory {
		t.Fatalf("Certificates = %+v, %v; want one in memory, not stored", infos, err)
	}
	if keys, err := store.List(ctxT(t), "certificates/"); err != nil || len(keys) != 0 {
		t.Fatalf("stored certificates %v (%v) while every Store fails, want none", keys, err)
	}
	store.fail.Store(false)
	ev.next(t, autotls.EventStored, "www.example.org", 30*time.Second)
	if n := e.ca.Requests("newOrder"); n != 1 {
		t.Fatalf("%d orders, want 1", n)
	}
	m2 := e.manager(t, store, nil)
	if _, err := m2.GetCertificate(hello("www.example.org")); err != nil {
		t.Fatalf("a second Manager on the storage: %v", err)
	}
	if n := e.ca.Requests("newOrder"); n != 1 {
		t.Fatalf("%d orders after the restart, want 1", n)
	}
}

// A managed name whose first order failed is retried in the background
// and obtained without any handshake.
func TestManagedRetriedInBackground(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	e.failHost.Store("www.example.org")
	ev := newEventLog()
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.DisableTLSALPN01 = true // http-01 only, which fails for now
		m.FailureBackoff = 200 * time.Millisecond
		m.OnEvent = ev.on
	})
	if err := m.Manage(ctxT(t), "www.example.org"); err == nil {
		t.Fatal("first Manage succeeded, want the validation failure")
	}
	e.failHost.Store("")
	ev.next(t, autotls.EventObtained, "www.example.org", 30*time.Second)
}

// http-01 validation failing: the next attempt uses tls-alpn-01.
func TestChallengeFallback(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	e.failHost.Store("www.example.org") // http-01 never works for it
	ev := newEventLog()
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.FailureBackoff = 200 * time.Millisecond
		m.OnEvent = ev.on
	})
	err := m.Manage(ctxT(t), "www.example.org")
	var ce *acme.ChallengeError
	if !errors.As(err, &ce) || ce.Type != acme.ChallengeHTTP01 {
		t.Fatalf("first Manage: got %v, want an http-01 ChallengeError", err)
	}
	ev.next(t, autotls.EventObtained, "www.example.org", 30*time.Second)
}

// ordersInFlight returns a Wrap that tracks the orders in flight at the CA
// (from newOrder to the certificate download), and their peak.
func ordersInFlight() (func(http.Handler) http.Handler, *atomic.Int32) {
	var inflight, peak atomic.Int32
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case r.URL.Path == "/order-plz":
				n := inflight.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
			case strings.HasPrefix(r.URL.Path, "/certZ/"):
				defer inflight.Add(-1)
			}
			next.ServeHTTP(w, r)
		})
	}, &peak
}

// Many names at once: the CA never sees more orders in flight than
// MaxBackgroundOrders.
func TestBackgroundOrdersBounded(t *testing.T) {
	t.Parallel()
	count, peak := ordersInFlight()
	e := newEnv(t, testpebble.Options{Wrap: count})
	const limit = 3
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.MaxBackgroundOrders = limit
		autotls.UnboundedForTest(m)
	})
	names := make([]string, 200)
	for i := range names {
		names[i] = "n" + itoa(i) + ".example.org"
	}
	if err := m.Manage(ctxT(t), names...); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	if p := peak.Load(); p > limit || p == 0 {
		t.Fatalf("peak of %d orders in flight at the CA, want 1 to %d", p, limit)
	}
	if n := e.ca.Requests("newOrder"); n != len(names) {
		t.Fatalf("%d orders for %d names", n, len(names))
	}
}

// BenchmarkRenewal measures one renewal against the in-process CA, with
// the Manager's default first ARI poll (hours after issuance): its ACME
// requests and its time.
func BenchmarkRenewal(b *testing.B) {
	e := newEnv(b, testpebble.Options{})
	m := e.manager(b, storage.NewMemory(), autotls.UnboundedForTest)
	autotls.SetARIFirstPollForTest(m, 6*time.Hour) // the default, which e.manager lowers
	if _, err := m.GetCertificate(hello("example.com")); err != nil {
		b.Fatal(err)
	}
	e.ca.ResetCounts()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		if err := autotls.RenewForTest(m, "example.com"); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.StopTimer()
	b.ReportMetric(float64(totalRequests(e.ca))/float64(n), "requests/renewal")
	b.ReportMetric(float64(e.ca.Requests("renewalInfo"))/float64(n), "ari/renewal")
	b.ReportMetric(float64(e.ca.Requests("newOrder"))/float64(n), "orders/renewal")
}

// BenchmarkIssue measures a new single-name certificate obtained in a
// handshake (GetCertificate), sequentially and from concurrent handshakes
// for distinct names, with the Manager's defaults: its ACME requests (the
// account's registration before the timer excluded) and its time.
func BenchmarkIssue(b *testing.B) {
	for _, par := range []bool{false, true} {
		name := "sequential"
		if par {
			name = "parallel"
		}
		b.Run(name, func(b *testing.B) {
			e := newEnv(b, testpebble.Options{})
			m := e.manager(b, storage.NewMemory(), func(m *autotls.Manager) {
				m.Hosts = func(context.Context, string) error { return nil }
				autotls.UnboundedForTest(m)
			})
			autotls.SetARIFirstPollForTest(m, 6*time.Hour) // the default, which e.manager lowers
			if _, err := m.GetCertificate(hello("warm-up.example.com")); err != nil {
				b.Fatal(err)
			}
			e.ca.ResetCounts()
			var seq atomic.Int64
			b.ResetTimer()
			if par {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := m.GetCertificate(hello("n" + itoa(int(seq.Add(1))) + ".example.com")); err != nil {
							b.Error(err)
						}
					}
				})
			} else {
				for b.Loop() {
					if _, err := m.GetCertificate(hello("n" + itoa(int(seq.Add(1))) + ".example.com")); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			n := float64(seq.Load())
			b.ReportMetric(float64(totalRequests(e.ca))/n, "requests/cert")
			b.ReportMetric(float64(e.ca.Requests("renewalInfo"))/n, "ari/cert")
		})
	}
}

// An IP address gets the CA's shortlived profile when it offers one and
// no profile is configured.
func TestIPShortlived(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{Profiles: map[string]time.Duration{"default": 0, "shortlived": 7 * 24 * time.Hour}})
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.AllowIPCertificates = true
		m.Hosts = autotls.HostWhitelist("127.0.0.1")
	})
	c, err := m.GetCertificate(hello("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	if life := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore); life > 8*24*time.Hour {
		t.Fatalf("IP certificate lives %v, want the shortlived profile's 7 days", life)
	}
}

// With the clock past expiry and the CA down: the expired certificate is
// dropped (an error names the failure) unless ServeExpired keeps it.
func TestServeExpired(t *testing.T) {
	t.Parallel()
	for _, serve := range []bool{false, true} {
		e := newEnv(t, testpebble.Options{})
		ev := newEventLog()
		var offset atomic.Int64
		m := e.manager(t, nil, func(m *autotls.Manager) {
			m.ServeExpired = serve
			m.OnEvent = ev.on
		})
		autotls.SetClockForTest(m, func() time.Time { return time.Now().Add(time.Duration(offset.Load())) })
		first, err := m.GetCertificate(hello("example.com"))
		if err != nil {
			t.Fatal(err)
		}
		e.ca.SetDown(testpebble.Down503)
		offset.Store(int64(time.Until(first.Leaf.NotAfter) + time.Minute))
		autotls.RunDueForTest(m, time.Now().Add(time.Duration(offset.Load())))
		exp := ev.next(t, autotls.EventExpired, "example.com", 10*time.Second)
		if !exp.NotAfter.Equal(first.Leaf.NotAfter) {
			t.Fatalf("expired event for %v, want %v", exp.NotAfter, first.Leaf.NotAfter)
		}
		ev.next(t, autotls.EventFailed, "example.com", 30*time.Second)
		cur, err := m.GetCertificate(hello("example.com"))
		switch {
		case serve && cur != first:
			t.Fatalf("ServeExpired: got %v, want the expired certificate as a last resort", err)
		case !serve && (cur != nil || err == nil):
			t.Fatalf("without ServeExpired: got a certificate, want an error")
		}
	}
}

// A renewal failing with less than a tenth of the lifetime left says the
// certificate is expiring.
func TestExpiringEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	ev := newEventLog()
	var offset atomic.Int64
	m := e.manager(t, nil, func(m *autotls.Manager) { m.OnEvent = ev.on })
	autotls.SetClockForTest(m, func() time.Time { return time.Now().Add(time.Duration(offset.Load())) })
	first, err := m.GetCertificate(hello("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	e.ca.SetDown(testpebble.Down503)
	// Five days before expiry: past the renewal time and within the last
	// tenth of a 90-day lifetime.
	offset.Store(int64(time.Until(first.Leaf.NotAfter) - 5*24*time.Hour))
	autotls.RunDueForTest(m, time.Now().Add(time.Duration(offset.Load())))
	x := ev.next(t, autotls.EventExpiring, "example.com", 30*time.Second)
	if !x.NotAfter.Equal(first.Leaf.NotAfter) || x.Err == nil {
		t.Fatalf("expiring event %+v, want the certificate's expiry and the failure", x)
	}
}

// Hundreds of stored certificates all due for renewal when a Manager
// starts: the CA never sees more orders in flight than
// MaxBackgroundOrders, and every one is renewed.
func TestDueAfterRestartBounded(t *testing.T) {
	t.Parallel()
	count, peak := ordersInFlight()
	e := newEnv(t, testpebble.Options{Wrap: count})
	// Certificates of a local CA, 80 days into a 90-day life: past their
	// renewal window, still valid.
	f := newFixture(t)
	store := storage.NewMemory()
	const n, limit = 300, 3
	names := make([]string, n)
	for i := range names {
		names[i] = "due" + itoa(i) + ".example.org"
		chain := f.leafPEMValid(t, names[i], int64(i+2), time.Now().Add(-80*24*time.Hour), time.Now().Add(10*24*time.Hour))
		if err := autotls.StoreForTest(ctxT(t), store, e.ca.DirectoryURL(), names[i], chain, f.leafKy); err != nil {
			t.Fatal(err)
		}
	}
	ev := newEventLog()
	var offset atomic.Int64
	m := e.manager(t, store, func(m *autotls.Manager) {
		m.MaxBackgroundOrders = limit
		m.OnEvent = ev.on
		autotls.UnboundedForTest(m)
		autotls.SetClockForTest(m, func() time.Time { return time.Now().Add(time.Duration(offset.Load())) })
	})
	if err := m.Manage(ctxT(t), names...); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	// Overdue at start-up, they are spread over the next hour (catchUp):
	// the hour passes.
	offset.Store(int64(time.Hour))
	deadline := time.Now().Add(60 * time.Second)
	for e.ca.Requests("certificate") < n && time.Now().Before(deadline) {
		autotls.RunDueForTest(m, time.Now().Add(time.Hour))
		time.Sleep(20 * time.Millisecond)
	}
	if got := e.ca.Requests("newOrder"); got != n {
		t.Fatalf("%d renewal orders for %d due certificates", got, n)
	}
	if p := peak.Load(); p > limit || p == 0 {
		t.Fatalf("peak of %d orders in flight at the CA, want 1 to %d", p, limit)
	}
}

// exchangeLog records the ACME exchanges an ACMEObserver is told of.
type exchangeLog struct {
	mu  sync.Mutex
	ops []string
}

func (x *exchangeLog) ObserveExchange(e acme.Exchange) {
	x.mu.Lock()
	x.ops = append(x.ops, e.Operation)
	x.mu.Unlock()
}

// The Manager's ACMEObserver sees its clients' exchanges, the background
// ARI poll included.
func TestACMEObserver(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	obs := &exchangeLog{}
	ev := newEventLog()
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.ACMEObserver = obs
		m.OnEvent = ev.on
	})
	if _, err := m.GetCertificate(hello("example.com")); err != nil {
		t.Fatal(err)
	}
	ev.next(t, autotls.EventScheduled, "example.com", 30*time.Second)
	obs.mu.Lock()
	defer obs.mu.Unlock()
	seen := strings.Join(obs.ops, ",")
	for _, op := range []string{acme.OpNewAccount, acme.OpNewOrder, acme.OpFinalize, acme.OpCertificate, acme.OpRenewalInfo} {
		if !strings.Contains(seen, op) {
			t.Errorf("observer saw %s, want %s among them", seen, op)
		}
	}
}

// With ServeExpired, an expired certificate found in storage is served at
// once while the CA is down, and renewed in the background once the CA is
// back, without another handshake.
func TestServeExpiredFromStorage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	f := newFixture(t)
	store := storage.NewMemory()
	chain := f.leafPEMValid(t, "example.com", 7, time.Now().Add(-91*24*time.Hour), time.Now().Add(-time.Hour))
	if err := autotls.StoreForTest(ctxT(t), store, e.ca.DirectoryURL(), "example.com", chain, f.leafKy); err != nil {
		t.Fatal(err)
	}
	ev := newEventLog()
	m := e.manager(t, store, func(m *autotls.Manager) {
		m.ServeExpired = true
		m.FailureBackoff = 200 * time.Millisecond
		m.OnEvent = ev.on
	})
	e.ca.SetDown(testpebble.Down503)
	c, _ := m.GetCertificate(hello("example.com"))
	ev.next(t, autotls.EventFailed, "example.com", 30*time.Second)
	if c == nil {
		if c, _ = m.GetCertificate(hello("example.com")); c == nil {
			t.Fatal("the expired stored certificate is not served as a last resort")
		}
	}
	if c.Leaf.SerialNumber.Int64() != 7 {
		t.Fatalf("served serial %v, want the stored expired one", c.Leaf.SerialNumber)
	}
	e.ca.SetDown(testpebble.Up)
	ev.next(t, autotls.EventRenewed, "example.com", 30*time.Second)
}
