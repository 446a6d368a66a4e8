package autotls_test

import (
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
)

const day = 24 * time.Hour

// lifetime47 is a CA issuing 47-day certificates, as Let's Encrypt will.
var lifetime47 = map[string]time.Duration{"default": 47 * day}

// A local clock ahead of or behind the CA's, by minutes or by weeks, with
// and without renewal information: the Manager measures the skew from the
// CA's Date headers, says so once, plans on the CA's time, and places
// exactly one order — a 47-day certificate is not "due" the moment it
// arrives on a clock 40 days ahead (it was ordered again at once, 417 to
// 565 times in 8 s, before). The local clock is an offset of the real
// one, not a FakeClock: the skew is measured against the CA's Date
// headers and its certificates' validity, which run on the real clock.
func TestClockSkew(t *testing.T) {
	t.Parallel()
	for _, skew := range []time.Duration{5 * time.Minute, -5 * time.Minute, 40 * day, -40 * day} {
		for _, ari := range []bool{true, false} {
			name := skew.String()
			if ari {
				name += "/ari"
			} else {
				name += "/no-ari"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				opts := testpebble.Options{Profiles: lifetime47}
				if !ari {
					opts.Wrap = noARI
				}
				e := newEnv(t, opts)
				ev := newEventLog()
				local := func() time.Time { return time.Now().Add(skew) }
				m := e.manager(t, nil, func(m *autotls.Manager) {
					m.OnEvent = ev.on
					autotls.SetLocalClockForTest(m, local)
				})
				if _, err := m.GetCertificate(hello("example.com")); err != nil {
					t.Fatal(err)
				}
				if ari {
					ev.next(t, autotls.EventScheduled, "example.com", 30*time.Second)
				} else {
					for deadline := time.Now().Add(30 * time.Second); e.ca.Requests("renewalInfo") == 0; {
						if time.Now().After(deadline) {
							t.Fatal("the renewal information was never asked for")
						}
						time.Sleep(10 * time.Millisecond)
					}
				}
				skewEv := ev.next(t, autotls.EventClockSkew, "", 5*time.Second)
				if d := (skewEv.Skew - skew).Abs(); d > 5*time.Second {
					t.Errorf("EventClockSkew says %v, want about %v", skewEv.Skew, skew)
				}
				measured, corrected := m.ClockSkew()
				if (measured-skew).Abs() > 5*time.Second || corrected != skewEv.Skew {
					t.Errorf("ClockSkew() = %v, %v; want about %v, and the event's %v", measured, corrected, skew, skewEv.Skew)
				}
				caNow := local().Add(-corrected)
				// Whatever was due runs now; nothing is.
				autotls.RunDueForTest(m, caNow)
				infos, err := m.Certificates(ctxT(t))
				if err != nil || len(infos) != 1 {
					t.Fatalf("Certificates: %v, %v", infos, err)
				}
				if left := infos[0].RenewAt.Sub(caNow); left < 20*day {
					t.Errorf("renewal planned %v from the CA's now (%s), want the certificate's own window about a month ahead", left, infos[0].RenewReason)
				}
				if _, err := m.GetCertificate(hello("example.com")); err != nil {
					t.Errorf("the certificate is not served on the skewed clock: %v", err)
				}
				if n := e.ca.Requests("newOrder"); n != 1 {
					t.Errorf("%d orders at the CA, want 1", n)
				}
				if n := ev.count(autotls.EventClockSkew, ""); n != 1 {
					t.Errorf("%d clock_skew events, want 1", n)
				}
			})
		}
	}
}

// noDate is a Wrap whose answers carry no Date header, so that the Manager
// cannot measure the skew from them.
func noDate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Date"] = nil // net/http adds none then
		next.ServeHTTP(w, r)
	})
}

// A clock 40 days ahead that the Manager cannot correct (a CA without Date
// headers): each new certificate looks due at once, but is renewed only
// at its floor, six hours after it was obtained, and at most
// MaxCertificatesPerName are obtained in a day; past that the name backs
// off, and the failure says why. (An offset of the real clock, as in
// TestClockSkew: the CA dates its certificates by the real one.)
func TestClockSkewUncorrectedBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{Profiles: lifetime47, Wrap: func(next http.Handler) http.Handler { return noDate(noARI(next)) }})
	ev := newEventLog()
	var adv atomic.Int64
	local := func() time.Time { return time.Now().Add(40*day + time.Duration(adv.Load())) }
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.OnEvent = ev.on
		autotls.SetLocalClockForTest(m, local)
	})
	if _, err := m.GetCertificate(hello("example.com")); err != nil {
		t.Fatal(err)
	}
	waitCerts := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); e.ca.Requests("certificate") < n; {
			if time.Now().After(deadline) {
				t.Fatalf("%d certificates downloaded, want %d; events: %s", e.ca.Requests("certificate"), n, ev)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	max := autotls.MaxCertificatesPerName
	for i := 1; i <= max; i++ {
		autotls.RunDueForTest(m, local())
		if n := e.ca.Requests("newOrder"); n != i {
			t.Fatalf("certificate %d: %d orders, want %d", i, n, i)
		}
		infos, err := m.Certificates(ctxT(t))
		if err != nil || len(infos) != 1 {
			t.Fatalf("Certificates: %v, %v", infos, err)
		}
		if got := infos[0].RenewAt.Sub(local()); got < 5*time.Hour || got > 6*time.Hour {
			t.Fatalf("certificate %d: renewal planned in %v, want six hours after it was obtained", i, got)
		}
		adv.Add(int64(6*time.Hour + time.Minute))
		autotls.RunDueForTest(m, local())
		if i < max {
			waitCerts(i + 1)
			ev.waitN(t, autotls.EventRenewed, "example.com", i, 30*time.Second)
		}
	}
	failed := ev.waitN(t, autotls.EventFailed, "example.com", 1, 30*time.Second)
	if err := failed[0].Err; !errors.Is(err, autotls.ErrOrderLimited) {
		t.Errorf("the held-back renewal failed with %v, want ErrOrderLimited", err)
	}
	if n := e.ca.Requests("newOrder"); n != max {
		t.Errorf("%d orders in a simulated day, want %d", n, max)
	}
	if _, err := m.GetCertificate(hello("example.com")); err != nil {
		t.Errorf("the last certificate is not served: %v", err)
	}
}

// An issuer's MaxOrdersPerMinute holds whatever asks for orders: with a
// bound of two and orders that may not wait, a third name in the same
// minute places no order, fails with ErrOrderLimited (its event says
// why), and is retried when the bound allows.
func TestIssuerOrderBound(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	ev := newEventLog()
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.Issuers[0].MaxOrdersPerMinute = 2
		m.OnEvent = ev.on
	})
	autotls.SetMaxOrderWaitForTest(m, 0)
	for _, name := range []string{"example.com", "www.example.org"} {
		if _, err := m.GetCertificate(hello(name)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	_, err := m.GetCertificate(hello("a.example.com"))
	if !errors.Is(err, autotls.ErrOrderLimited) {
		t.Fatalf("a third order in the minute: %v, want ErrOrderLimited", err)
	}
	if n := e.ca.Requests("newOrder"); n != 2 {
		t.Errorf("%d orders at the CA, want 2", n)
	}
	f := ev.next(t, autotls.EventFailed, "a.example.com", 5*time.Second)
	if !errors.Is(f.Err, autotls.ErrOrderLimited) || f.RetryAt.Before(time.Now().Add(20*time.Second)) {
		t.Errorf("EventFailed: %v, retry at %v; want ErrOrderLimited and a retry when the bound allows (about 30 s)", f.Err, f.RetryAt)
	}
}
