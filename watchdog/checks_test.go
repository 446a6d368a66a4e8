package watchdog_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/watchdog"
)

// problems is the set of Err values a result's problems wrap.
var allErrs = []error{
	watchdog.ErrExpiringSoon, watchdog.ErrExpired, watchdog.ErrNotYetValid,
	watchdog.ErrNameMismatch, watchdog.ErrUntrusted, watchdog.ErrNotManagerCertificate,
	watchdog.ErrUnreachable, watchdog.ErrHandshake, watchdog.ErrInvalidTarget,
}

// checkProblems fails unless r's problems wrap exactly want, one each.
func checkProblems(t *testing.T, r watchdog.Result, want ...error) {
	t.Helper()
	if len(r.Problems) != len(want) {
		t.Errorf("got %d problems %v, want %d %v", len(r.Problems), r.Problems, len(want), want)
	}
	err := r.Err()
	for _, e := range allErrs {
		wanted := false
		for _, w := range want {
			wanted = wanted || w == e
		}
		if got := errors.Is(err, e); got != wanted {
			t.Errorf("errors.Is(%v, %v): got %v, want %v", err, e, got, wanted)
		}
	}
	if got, want := r.OK(), len(want) == 0; got != want {
		t.Errorf("OK: got %v, want %v", got, want)
	}
}

func TestCheckServedChain(t *testing.T) {
	ca := newTestCA(t)
	now := time.Now()
	leaf := func(nb, na time.Duration, names ...string) tls.Certificate {
		return ca.leaf(t, now.Add(nb), now.Add(na), names...)
	}
	leafOnly := leaf(-time.Hour, 90*day, "healthy.test")
	leafOnly.Certificate = leafOnly.Certificate[:1]

	tests := []struct {
		name       string
		cert       tls.Certificate
		serverName string // "" means the listener's IP address
		mod        func(*watchdog.Watchdog)
		want       []error
		text       string // in the problems, when set
	}{
		{name: "healthy", cert: leaf(-time.Hour, 90*day, "healthy.test"), serverName: "healthy.test"},
		{name: "expiring within 7 days", cert: leaf(-80*day, 3*day, "expiring.test"), serverName: "expiring.test",
			want: []error{watchdog.ErrExpiringSoon}, text: "in 2d 23h (at "}, // NotAfter has whole seconds
		{name: "expiring, threshold as written", cert: leaf(-80*day, 3*day, "expiring.test"), serverName: "expiring.test",
			want: []error{watchdog.ErrExpiringSoon}, text: "threshold 7d)"},
		{name: "8 days left of 90", cert: leaf(-82*day, 8*day, "fine.test"), serverName: "fine.test"},
		{name: "6-day certificate, 4 days left", cert: leaf(-2*day, 4*day, "short.test"), serverName: "short.test"},
		{name: "6-day certificate, 1 day left", cert: leaf(-5*day, day, "short.test"), serverName: "short.test",
			want: []error{watchdog.ErrExpiringSoon}},
		{name: "fraction off: 6-day certificate, 4 days left", cert: leaf(-2*day, 4*day, "short.test"), serverName: "short.test",
			mod: func(w *watchdog.Watchdog) { w.ExpiryFraction = -1 }, want: []error{watchdog.ErrExpiringSoon}},
		{name: "threshold off", cert: leaf(-80*day, 3*day, "expiring.test"), serverName: "expiring.test",
			mod: func(w *watchdog.Watchdog) { w.ExpiryThreshold = -1 }},
		{name: "threshold 30 days", cert: leaf(-60*day, 20*day, "expiring.test"), serverName: "expiring.test",
			mod: func(w *watchdog.Watchdog) { w.ExpiryThreshold = 30 * day; w.ExpiryFraction = 1 }, want: []error{watchdog.ErrExpiringSoon}},
		{name: "expired", cert: leaf(-90*day, -day, "expired.test"), serverName: "expired.test",
			want: []error{watchdog.ErrExpired}, text: ": 1d ago (at "},
		{name: "not yet valid", cert: leaf(day, 90*day, "future.test"), serverName: "future.test",
			want: []error{watchdog.ErrNotYetValid}},
		{name: "wrong name", cert: leaf(-time.Hour, 90*day, "other.test"), serverName: "healthy.test",
			want: []error{watchdog.ErrNameMismatch}},
		{name: "expired and wrong name", cert: leaf(-90*day, -day, "other.test"), serverName: "healthy.test",
			want: []error{watchdog.ErrExpired, watchdog.ErrNameMismatch}},
		{name: "wildcard covers the name", cert: leaf(-time.Hour, 90*day, "*.wild.test"), serverName: "a.wild.test"},
		{name: "wildcard covers one label only", cert: leaf(-time.Hour, 90*day, "*.wild.test"), serverName: "a.b.wild.test",
			want: []error{watchdog.ErrNameMismatch}},
		{name: "name normalised", cert: leaf(-time.Hour, 90*day, "healthy.test"), serverName: "Healthy.TEST."},
		{name: "self-signed", cert: selfSigned(t, now.Add(-time.Hour), now.Add(90*day), "healthy.test"), serverName: "healthy.test",
			want: []error{watchdog.ErrUntrusted}},
		{name: "intermediate not served", cert: leafOnly, serverName: "healthy.test",
			want: []error{watchdog.ErrUntrusted}},
		{name: "other roots", cert: leaf(-time.Hour, 90*day, "healthy.test"), serverName: "healthy.test",
			mod: func(w *watchdog.Watchdog) { w.Roots = newTestCA(t).pool }, want: []error{watchdog.ErrUntrusted}},
		{name: "IP address", cert: leaf(-time.Hour, 90*day, "127.0.0.1")},
		{name: "IP address not covered", cert: leaf(-time.Hour, 90*day, "healthy.test"),
			want: []error{watchdog.ErrNameMismatch}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr := testsetup.ServeCertificate(t, tt.cert)
			w := &watchdog.Watchdog{Roots: ca.pool, Now: func() time.Time { return now }}
			if tt.mod != nil {
				tt.mod(w)
			}
			defer w.Close()
			r, err := w.Check(ctxT(t), watchdog.Target{Addr: addr, ServerName: tt.serverName})
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			checkProblems(t, r, tt.want...)
			if tt.text != "" && (r.Err() == nil || !strings.Contains(r.Err().Error(), tt.text)) {
				t.Errorf("problems %v, want %q in them", r.Problems, tt.text)
			}
			if got, want := r.Serial(), hex.EncodeToString(tt.cert.Leaf.SerialNumber.Bytes()); got != want {
				t.Errorf("Serial: got %s, want %s", got, want)
			}
			if got, want := len(r.Chain), len(tt.cert.Certificate); got != want {
				t.Errorf("chain length: got %d, want %d", got, want)
			}
			if !r.Time.Equal(now) {
				t.Errorf("Time: got %v, want %v", r.Time, now)
			}
		})
	}
}

func TestCheckUntrustedWrapsX509Error(t *testing.T) {
	now := time.Now()
	addr := testsetup.ServeCertificate(t, selfSigned(t, now.Add(-time.Hour), now.Add(day), "self.test"))
	w := &watchdog.Watchdog{Roots: x509.NewCertPool()}
	r, err := w.Check(ctxT(t), watchdog.Target{Addr: addr, ServerName: "self.test"})
	if err != nil {
		t.Fatal(err)
	}
	var ua x509.UnknownAuthorityError
	if !errors.As(r.Err(), &ua) {
		t.Errorf("errors.As(%v, UnknownAuthorityError): got false, want true", r.Err())
	}
}

func TestCheckConnectionFailures(t *testing.T) {
	ca := newTestCA(t)
	now := time.Now()
	healthy := testsetup.ServeCertificate(t, ca.leaf(t, now.Add(-time.Hour), now.Add(90*day), "healthy.test"))
	notTLS := serveRaw(t, func(c net.Conn) { c.Close() })
	silent := make(chan struct{})
	t.Cleanup(func() { close(silent) })
	stalls := serveRaw(t, func(c net.Conn) { <-silent; c.Close() })
	refuses := testsetup.ServeTLS(t, "127.0.0.1:0", &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return nil, errors.New("unknown name")
	}})

	tests := []struct {
		name    string
		target  watchdog.Target
		want    error
		wantErr error // also wrapped
	}{
		{name: "closed port", target: watchdog.Target{Addr: closedAddr(t), ServerName: "healthy.test"}, want: watchdog.ErrUnreachable},
		{name: "not TLS", target: watchdog.Target{Addr: notTLS, ServerName: "healthy.test"}, want: watchdog.ErrHandshake},
		{name: "server refuses the name", target: watchdog.Target{Addr: refuses, ServerName: "healthy.test"}, want: watchdog.ErrHandshake},
		{name: "no answer within the timeout", target: watchdog.Target{Addr: stalls, ServerName: "healthy.test"},
			want: watchdog.ErrHandshake, wantErr: context.DeadlineExceeded},
		{name: "no port", target: watchdog.Target{Addr: "healthy.test", ServerName: "healthy.test"}, want: watchdog.ErrInvalidTarget},
		{name: "invalid name", target: watchdog.Target{Addr: healthy, ServerName: "bad name!"}, want: watchdog.ErrInvalidTarget},
		{name: "managed without a Manager", target: watchdog.Target{Addr: healthy, ServerName: "healthy.test", Managed: true},
			want: watchdog.ErrInvalidTarget},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := &watchdog.Watchdog{Roots: ca.pool, Timeout: 200 * time.Millisecond}
			r, err := w.Check(ctxT(t), tt.target)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			checkProblems(t, r, tt.want)
			if tt.wantErr != nil && !errors.Is(r.Err(), tt.wantErr) {
				t.Errorf("errors.Is(%v, %v): got false, want true", r.Err(), tt.wantErr)
			}
			if r.Chain != nil {
				t.Errorf("Chain: got %d certificates, want none", len(r.Chain))
			}
		})
	}
}
