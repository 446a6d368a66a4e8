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

// A certificate of six days renews again and again, on the test clock,
// and every two hours of it the certificate served is valid at that time
// (twice a day through a TLS handshake whose client verifies the chain at
// the clock's time). Each renewal is one order, and
// twenty days hold at least five renewals (each when at most half the
// lifetime, three days, is left). It ran for 45 s on certificates of 16 s
// before, and one stress run saw a renewal miss the expiry under load.
func TestRenewsWithoutGap(t *testing.T) {
	t.Parallel()
	c := newClockedEnv(t, testpebble.Options{Profiles: map[string]time.Duration{"short": 6 * day}}, nil)
	ev := newEventLog()
	m := c.manager(t, func(m *autotls.Manager) {
		m.Issuers[0].Profile = "short"
		m.OnEvent = ev.on
	})
	addr := serve(t, m)
	serials := map[string]bool{c.handshake(t, addr, "example.com").SerialNumber.String(): true}
	for i := range 20 * 12 {
		c.advance(t, 2*time.Hour, m)
		leaf := c.serving(t, m, "example.com")
		if i%6 == 0 {
			leaf = c.handshake(t, addr, "example.com")
		}
		serials[leaf.SerialNumber.String()] = true
	}
	if len(serials) < 6 {
		t.Fatalf("served %d certificates in 20 days of a 6-day profile, want at least 6 (five renewals); events %s", len(serials), ev)
	}
	if n := len(c.cca.orderTimes()); n != len(serials) {
		t.Fatalf("%d orders for %d certificates served, want one each", n, len(serials))
	}
}

// Revocation at the CA moves its ARI window into the past: the next ARI
// poll (an hour later on the test clock, as the CA's Retry-After asks)
// renews at once, with replaces naming the revoked certificate.
func TestRevocationReplaced(t *testing.T) {
	t.Parallel()
	var orders orderLog
	hourly := rewrite("/draft-ietf-acme-ari-03/renewalInfo", func(rec *httptest.ResponseRecorder) []byte {
		rec.Header().Set("Retry-After", "3600")
		return rec.Body.Bytes()
	})
	e := newEnv(t, testpebble.Options{Wrap: func(h http.Handler) http.Handler { return orders.wrap(hourly(h)) }})
	ev := newEventLog()
	var logs syncBuffer
	clk := autotls.NewFakeClock(time.Now())
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.OnEvent = ev.on
		m.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		autotls.SetFakeClockForTest(m, clk)
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	first, err := m.GetCertificate(hello("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	advanceT(t, clk, time.Minute, m) // the first ARI poll, at once after issuance here
	if s := ev.next(t, autotls.EventScheduled, "example.com", time.Second); s.Reason != autotls.ReasonARI {
		t.Fatalf("scheduled by %q, want ari", s.Reason)
	}
	if err := e.ca.Revoke(first.Leaf, acme.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	advanceT(t, clk, 50*time.Minute, m)
	if n := ev.count(autotls.EventReplaced, "example.com"); n != 0 {
		t.Fatalf("replaced before the next ARI poll the CA asked for")
	}
	advanceT(t, clk, 20*time.Minute, m)
	renewed := ev.next(t, autotls.EventReplaced, "example.com", time.Second)
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
	clk := autotls.NewFakeClock(time.Now())
	m := e.manager(t, nil, func(m *autotls.Manager) { autotls.SetFakeClockForTest(m, clk) })
	if _, err := m.GetCertificate(hello("example.com")); err != nil {
		t.Fatal(err)
	}
	// The first poll, at once after issuance here, is applied.
	if err := clk.Settle(m); err != nil {
		t.Fatal(err)
	}
	infos, err := m.Certificates(ctxT(t))
	if err != nil || len(infos) != 1 {
		t.Fatalf("Certificates = %+v, %v; want one", infos, err)
	}
	info := infos[0]
	if info.ARIWindowStart.IsZero() || e.ca.Requests("renewalInfo") != 1 {
		t.Fatalf("the ARI answer was not recorded after %d polls", e.ca.Requests("renewalInfo"))
	}
	if info.RenewReason != autotls.ReasonSchedule || !info.RenewAt.Before(info.NotAfter) {
		t.Fatalf("renewal at %v by %q, want the Manager's own schedule before %v", info.RenewAt, info.RenewReason, info.NotAfter)
	}
}

// The CA answers 503 to everything (with no Retry-After) during a
// renewal: on the test clock, the old certificate is served throughout,
// attempts back off further each time, and the renewal succeeds once the
// CA is back. (Each attempt still takes about a second of real time: the
// ACME client repeats a 503 within the call, on the real clock.)
func TestCADown503DuringRenewal(t *testing.T) {
	t.Parallel()
	c := newClockedEnv(t, testpebble.Options{}, nil)
	ev := &clockEvents{clk: c.clk}
	m := c.manager(t, func(m *autotls.Manager) { m.OnEvent = ev.on })
	first := c.serving(t, m, "example.com")
	// Down a minute before the renewal is due: the daily ARI polls
	// before it would fail too, each taking its real second.
	windowStart, _ := c.cca.window(first.NotBefore, first.NotAfter)
	c.advance(t, windowStart.Sub(c.clk.Now()), m)
	infos, err := m.Certificates(ctxT(t))
	if err != nil || len(infos) != 1 || infos[0].RenewAt.Before(c.clk.Now()) {
		t.Fatalf("Certificates = %+v, %v; want one renewal to come", infos, err)
	}
	due := infos[0].RenewAt
	c.advance(t, due.Add(-time.Minute).Sub(c.clk.Now()), m)
	if err := c.ca.SetDown(testpebble.Down503); err != nil {
		t.Fatal(err)
	}
	for len(ev.of(autotls.EventFailed)) < 2 {
		c.advance(t, time.Minute, m)
		if leaf := c.serving(t, m, "example.com"); !leaf.Equal(first) {
			t.Fatalf("at %v: renewed while the CA is down", c.clk.Now())
		}
		if c.clk.Now().After(due.Add(time.Hour)) {
			t.Fatalf("fewer than two failed attempts an hour after %v; events %s", due, ev)
		}
	}
	f := ev.of(autotls.EventFailed)
	// The second attempt ran at the first's retry time (±10 % of a
	// minute's back-off), and its retry is about two minutes later.
	if !f[1].RetryAt.After(f[0].RetryAt) || f[1].at.Sub(f[0].at) > 2*time.Minute {
		t.Errorf("attempts at %v and %v, retries at %v then %v, want the second at the first retry and later and later", f[0].at, f[1].at, f[0].RetryAt, f[1].RetryAt)
	}
	if gap, min := f[1].RetryAt.Sub(f[1].at), 9*2*time.Minute/10; gap < min {
		t.Errorf("second retry %v after its attempt, want the doubled back-off (at least %v)", gap, min)
	}
	if err := c.ca.SetDown(testpebble.Up); err != nil {
		t.Fatal(err)
	}
	c.advance(t, 5*time.Minute, m)
	if n := len(ev.of(autotls.EventRenewed)); n != 1 {
		t.Fatalf("%d renewals within the back-off after the CA's return, want 1; events %s", n, ev)
	}
	if leaf := c.serving(t, m, "example.com"); leaf.Equal(first) {
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

// failingStore fails every Store of a certificate while fail is set, and
// counts the ones it failed.
type failingStore struct {
	storage.Storage
	fail   atomic.Bool
	failed atomic.Int64
}

func (s *failingStore) Store(ctx context.Context, key string, value []byte) error {
	if s.fail.Load() && strings.HasPrefix(key, "certificates/") {
		s.failed.Add(1)
		return errors.New("disk full")
	}
	return s.Storage.Store(ctx, key, value)
}

// A certificate whose Store failed is served from memory and stored once
// storage recovers (on the test clock, at the next retry after the
// failure back-off), without a second order.
func TestFailedStoreRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	store := &failingStore{Storage: storage.NewMemory()}
	store.fail.Store(true)
	ev := newEventLog()
	clk := autotls.NewFakeClock(time.Now())
	m := e.manager(t, store, func(m *autotls.Manager) {
		m.OnEvent = ev.on
		autotls.SetFakeClockForTest(m, clk)
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
	// The retries come once a minute (±10 %) and fail, also once the
	// first ARI poll (due at once after issuance here) is overdue: it
	// made them come at once, again and again, before.
	advanceT(t, clk, 10*time.Minute, m)
	if n := ev.count(autotls.EventStored, "www.example.org"); n != 0 {
		t.Fatalf("%d stored events while every Store fails", n)
	}
	if n := store.failed.Load(); n < 9 || n > 13 {
		t.Fatalf("%d failed Stores in 10 minutes of retries a minute apart, want 9 to 13", n)
	}
	store.fail.Store(false)
	advanceT(t, clk, 3*time.Minute, m)
	if n := ev.count(autotls.EventStored, "www.example.org"); n != 1 {
		t.Fatalf("%d stored events within the back-off after storage recovered, want 1; events %s", n, ev)
	}
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
// after the failure back-off (a minute ±10 %, on the test clock), not
// before, and obtained without any handshake.
func TestManagedRetriedInBackground(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	e.failHost.Store("www.example.org")
	ev := newEventLog()
	clk := autotls.NewFakeClock(time.Now())
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.DisableTLSALPN01 = true // http-01 only, which fails for now
		m.OnEvent = ev.on
		autotls.SetFakeClockForTest(m, clk)
	})
	if err := m.Manage(ctxT(t), "www.example.org"); err == nil {
		t.Fatal("first Manage succeeded, want the validation failure")
	}
	e.failHost.Store("")
	orders := e.ca.Requests("newOrder")
	advanceT(t, clk, 50*time.Second, m)
	if n := e.ca.Requests("newOrder"); n != orders {
		t.Fatalf("%d orders within the back-off, want none", n-orders)
	}
	advanceT(t, clk, 20*time.Second, m)
	if n := ev.count(autotls.EventObtained, "www.example.org"); n != 1 {
		t.Fatalf("%d obtained events after the back-off, want 1; events %s", n, ev)
	}
}

// http-01 validation failing: the next attempt uses tls-alpn-01.
func TestChallengeFallback(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	e.failHost.Store("www.example.org") // http-01 never works for it
	ev := newEventLog()
	clk := autotls.NewFakeClock(time.Now())
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.OnEvent = ev.on
		autotls.SetFakeClockForTest(m, clk)
	})
	err := m.Manage(ctxT(t), "www.example.org")
	var ce *acme.ChallengeError
	if !errors.As(err, &ce) || ce.Type != acme.ChallengeHTTP01 {
		t.Fatalf("first Manage: got %v, want an http-01 ChallengeError", err)
	}
	advanceT(t, clk, 70*time.Second, m) // the failure back-off, a minute ±10 %
	if n := ev.count(autotls.EventObtained, "www.example.org"); n != 1 {
		t.Fatalf("%d obtained events after the back-off, want 1; events %s", n, ev)
	}
	if n := e.ca.Requests("newOrder"); n != 2 {
		t.Fatalf("%d orders, want 2 (http-01, then tls-alpn-01)", n)
	}
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
	names := storeDue(t, f, store, e.ca.DirectoryURL(), n, time.Now().Add(-80*24*time.Hour), time.Now().Add(10*24*time.Hour))
	ev := newEventLog()
	clk := autotls.NewFakeClock(time.Now())
	m := e.manager(t, store, func(m *autotls.Manager) {
		m.MaxBackgroundOrders = limit
		m.OnEvent = ev.on
		autotls.UnboundedForTest(m)
		autotls.SetFakeClockForTest(m, clk)
	})
	if err := m.Manage(ctxT(t), names...); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	// Overdue at start-up, they are spread over the next hour (catchUp):
	// the hour passes at once, so that all of them are due together.
	if err := clk.Jump(time.Hour, m); err != nil {
		t.Fatal(err)
	}
	if got := e.ca.Requests("certificate"); got != n {
		t.Fatalf("%d certificates downloaded for %d due, want all", got, n)
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
	clk := autotls.NewFakeClock(time.Now())
	m := e.manager(t, store, func(m *autotls.Manager) {
		m.ServeExpired = true
		m.OnEvent = ev.on
		autotls.SetFakeClockForTest(m, clk)
	})
	e.ca.SetDown(testpebble.Down503)
	c, _ := m.GetCertificate(hello("example.com"))
	if err := clk.Settle(m); err != nil {
		t.Fatal(err)
	}
	if n := ev.count(autotls.EventFailed, "example.com"); n != 1 {
		t.Fatalf("%d failed events while the CA is down, want 1; events %s", n, ev)
	}
	if c == nil {
		if c, _ = m.GetCertificate(hello("example.com")); c == nil {
			t.Fatal("the expired stored certificate is not served as a last resort")
		}
	}
	if c.Leaf.SerialNumber.Int64() != 7 {
		t.Fatalf("served serial %v, want the stored expired one", c.Leaf.SerialNumber)
	}
	e.ca.SetDown(testpebble.Up)
	advanceT(t, clk, 70*time.Second, m) // the failure back-off, a minute ±10 %
	if n := ev.count(autotls.EventRenewed, "example.com"); n != 1 {
		t.Fatalf("%d renewed events after the back-off, want 1; events %s", n, ev)
	}
}

// A certificate whose Store keeps failing until it expires is retried once
// per back-off (an hour here) until then; at its expiry it is treated as
// expired (one new order, served from memory, its Store retried hourly
// too), where the expiry made the retries come at once, again and again,
// with the expired certificate still served, before.
func TestFailedStoreUntilExpiry(t *testing.T) {
	t.Parallel()
	c := newClockedEnv(t, testpebble.Options{Profiles: map[string]time.Duration{"short": 6 * day}}, nil)
	store := &failingStore{Storage: storage.NewMemory()}
	store.fail.Store(true)
	m := c.env.manager(t, store, func(m *autotls.Manager) {
		autotls.SetFakeClockForTest(m, c.clk)
		m.Issuers[0].Profile = "short"
		m.FailureBackoff = time.Hour
	})
	if err := m.Manage(ctxT(t), "www.example.org"); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	c.advance(t, 8*day, m)
	// 8 days of retries an hour apart (±10 %): about 192.
	if n := store.failed.Load(); n > 250 {
		t.Fatalf("%d failed Stores in 8 days of retries an hour apart, want at most 250", n)
	}
	if n := len(c.cca.orderTimes()); n != 2 {
		t.Fatalf("%d orders in 8 days of a 6-day certificate never stored, want 2 (the first, and one at its expiry)", n)
	}
	c.serving(t, m, "www.example.org")
}
