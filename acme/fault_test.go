package acme_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// faultCA returns a CA whose handler calls fault first; fault returns true
// when it answered the request itself.
func faultCA(t *testing.T, fault func(w http.ResponseWriter, r *http.Request) bool) *testpebble.CA {
	t.Helper()
	return newCA(t, testpebble.Options{Wrap: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !fault(w, r) {
				next.ServeHTTP(w, r)
			}
		})
	}})
}

func TestNonceRejection(t *testing.T) {
	t.Parallel()
	t.Run("30%", func(t *testing.T) {
		t.Parallel()
		// Each request is retried up to ten times: at 30 % a whole
		// issuance (about ten requests) fails one time in ten thousand
		// (at 50 %, one time in a hundred).
		ca := newCA(t, testpebble.Options{NonceRejectPercent: 30})
		s := newHTTPSolver(t, ca)
		c := registered(t, ca)
		mustObtain(t, c, s, "nonce30.example.com")
	})
	t.Run("100%", func(t *testing.T) {
		t.Parallel()
		ca := newCA(t, testpebble.Options{NonceRejectPercent: 100})
		c := newClient(t, ca)
		_, err := c.Register(ctxT(t), acme.Account{TermsOfServiceAgreed: true})
		wantIs(t, err, acme.ErrBadNonce)
		if got := ca.Requests("newAccount"); got != 10 {
			t.Fatalf("%d newAccount attempts, want exactly 10", got)
		}
	})
}

func TestFaults(t *testing.T) {
	t.Parallel()
	onPath := func(prefix string, f func(w http.ResponseWriter)) func(http.ResponseWriter, *http.Request) bool {
		return func(w http.ResponseWriter, r *http.Request) bool {
			if !strings.HasPrefix(r.URL.Path, prefix) {
				return false
			}
			w.Header().Set("Replay-Nonce", "bm9uY2U")
			f(w)
			return true
		}
	}
	retryDate := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	cases := []struct {
		name  string
		fault func(http.ResponseWriter, *http.Request) bool
		check func(t *testing.T, err error)
	}{
		{"503 on newOrder", onPath("/order-plz", func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusServiceUnavailable)
		}), func(t *testing.T, err error) {
			wantIs(t, err, acme.ErrServerInternal)
			if !acme.IsRetryable(err) {
				t.Error("a 503 is not retryable")
			}
		}},
		{"429 with Retry-After seconds", onPath("/order-plz", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many","status":429}`)
		}), func(t *testing.T, err error) {
			wantIs(t, err, acme.ErrRateLimited)
			var p *acme.Problem
			if !errors.As(err, &p) || p.RetryAfter != 120*time.Second || p.Detail != "too many" {
				t.Errorf("problem = %+v, want RetryAfter 2m and detail", p)
			}
		}},
		{"429 with Retry-After date and odd type spelling", onPath("/order-plz", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set("Retry-After", retryDate)
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"type":"URN:IETF:PARAMS:ACME:ERROR:RATELIMITED"}`)
		}), func(t *testing.T, err error) {
			wantIs(t, err, acme.ErrRateLimited)
			var p *acme.Problem
			if !errors.As(err, &p) || p.RetryAfter < 80*time.Second || p.RetryAfter > 91*time.Second {
				t.Errorf("RetryAfter = %v, want about 90s", p.RetryAfter)
			}
		}},
		{"429 without problem document", onPath("/order-plz", func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusTooManyRequests)
		}), func(t *testing.T, err error) { wantIs(t, err, acme.ErrRateLimited) }},
		{"HTML 502 page", onPath("/order-plz", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "<html><body><h1>502 Bad Gateway</h1>\x00\xff</body></html>")
		}), func(t *testing.T, err error) {
			var p *acme.Problem
			if !errors.As(err, &p) || p.Status != 502 || !strings.Contains(p.Detail, "502 Bad Gateway") {
				t.Errorf("problem = %+v, want status 502 and an excerpt", p)
			}
		}},
		{"truncated JSON order", onPath("/order-plz", func(w http.ResponseWriter) {
			w.Header().Set("Location", "https://127.0.0.1/my-order/1")
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"status":"pending","identifiers":[{"type":"dns","va`)
		}), func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "malformed order") {
				t.Errorf("got %v, want a malformed order error", err)
			}
		}},
		{"order with http authorization URL", onPath("/order-plz", func(w http.ResponseWriter) {
			w.Header().Set("Location", "https://127.0.0.1/my-order/1")
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"status":"pending","identifiers":[],"authorizations":["http://127.0.0.1/authZ/1"],"finalize":"https://127.0.0.1/f"}`)
		}), func(t *testing.T, err error) { wantIs(t, err, acme.ErrInsecureURL) }},
		{"order without Location", onPath("/order-plz", func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"status":"pending"}`)
		}), func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "Location") {
				t.Errorf("got %v, want a missing Location error", err)
			}
		}},
		{"100 MiB body", onPath("/order-plz", func(w http.ResponseWriter) {
			w.Header().Set("Location", "https://127.0.0.1/my-order/1")
			w.WriteHeader(http.StatusCreated)
			chunk := []byte(strings.Repeat(" ", 1<<20))
			for range 100 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}), func(t *testing.T, err error) { wantIs(t, err, acme.ErrResponseTooLarge) }},
		{"JSON array instead of object", onPath("/order-plz", func(w http.ResponseWriter) {
			w.Header().Set("Location", "https://127.0.0.1/my-order/1")
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `[1,2,3]`)
		}), func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "malformed order") {
				t.Errorf("got %v, want malformed order", err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ca := faultCA(t, tc.fault)
			c := registered(t, ca)
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := c.NewOrder(ctxT(t), acme.OrderRequest{Identifiers: acme.DNSNames("fault.example.com")})
			if err == nil {
				t.Fatal("NewOrder succeeded against a faulty CA")
			}
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
				t.Errorf("allocated %d MiB handling one response", grew>>20)
			}
			tc.check(t, err)
		})
	}
}

func TestInsecureDirectory(t *testing.T) {
	t.Parallel()
	ca := faultCA(t, func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/dir" {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"newNonce":"http://127.0.0.1/nonce","newAccount":"https://127.0.0.1/acct","newOrder":"https://127.0.0.1/order"}`)
		return true
	})
	c := newClient(t, ca)
	_, err := c.Register(ctxT(t), acme.Account{TermsOfServiceAgreed: true})
	wantIs(t, err, acme.ErrInsecureURL)
	if got := ca.Requests("newAccount") + ca.Requests("newNonce"); got != 0 {
		t.Fatalf("%d requests after an insecure directory", got)
	}
}

func TestOrderStuckProcessing(t *testing.T) {
	t.Parallel()
	var stuck atomic.Bool
	ca := faultCA(t, func(w http.ResponseWriter, r *http.Request) bool {
		if !stuck.Load() || !strings.HasPrefix(r.URL.Path, "/my-order/") {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Replay-Nonce", "c3R1Y2s")
		io.WriteString(w, `{"status":"processing","identifiers":[{"type":"dns","value":"stuck.example.com"}],"authorizations":[],"finalize":"https://127.0.0.1/finalize-order/x"}`)
		return true
	})
	s := newHTTPSolver(t, ca)
	c := registered(t, ca)
	c.MaxPollInterval = 50 * time.Millisecond
	// A first certificate proves the flow works, then orders get stuck.
	mustObtain(t, c, s, "ok.example.com")
	stuck.Store(true)
	// The deadline must fall while the order is polled, after a real
	// validation: give that validation seconds, however busy the machine.
	const deadline = 5 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	_, err := c.Obtain(ctx, acme.ObtainRequest{Identifiers: acme.DNSNames("stuck.example.com"), CertKey: newKey(t), Solvers: s.solvers()})
	wantIs(t, err, context.DeadlineExceeded)
	if !strings.Contains(err.Error(), "processing") {
		t.Errorf("error %q does not say the order was processing", err)
	}
	// Well short of the client's other limits (the 30 s HTTP timeout).
	if took := time.Since(start); took > deadline+10*time.Second {
		t.Fatalf("took %v for a %v deadline", took, deadline)
	}
}

func TestStalledServerHonoursDeadline(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	ca := faultCA(t, func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/order-plz" {
			return false
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return true
	})
	defer close(release)
	c := registered(t, ca)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("stall.example.com")})
	wantIs(t, err, context.DeadlineExceeded)
	// The server stalls forever: any return comes from the deadline. The
	// bound only has to stay below the HTTP client's 30 s timeout.
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("took %v for a 300ms deadline", took)
	}
}

func TestMalformedCertificateChain(t *testing.T) {
	t.Parallel()
	var bad atomic.Bool
	ca := faultCA(t, func(w http.ResponseWriter, r *http.Request) bool {
		if !bad.Load() || !strings.HasPrefix(r.URL.Path, "/certZ/") {
			return false
		}
		w.Header().Set("Content-Type", "application/pem-certificate-chain")
		io.WriteString(w, "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
		return true
	})
	s := newHTTPSolver(t, ca)
	c := registered(t, ca)
	bad.Store(true)
	_, _, err := obtain(t, c, s, acme.DNSNames("badchain.example.com"), nil)
	wantIs(t, err, acme.ErrMalformedChain)
}

// TestIssuedCertificateMismatch serves the chain of an earlier order in place
// of the new one: Obtain must notice the wrong key and names.
func TestIssuedCertificateMismatch(t *testing.T) {
	t.Parallel()
	var swap atomic.Value // PEM to serve instead of any certificate
	ca := faultCA(t, func(w http.ResponseWriter, r *http.Request) bool {
		pemChain, _ := swap.Load().([]byte)
		if pemChain == nil || !strings.HasPrefix(r.URL.Path, "/certZ/") {
			return false
		}
		w.Header().Set("Content-Type", "application/pem-certificate-chain")
		w.Header().Set("Replay-Nonce", "c3dhcA")
		w.Write(pemChain)
		return true
	})
	s := newHTTPSolver(t, ca)
	c := registered(t, ca)
	old := mustObtain(t, c, s, "old.example.com")
	swap.Store(old.Chain.PEM)
	_, _, err := obtain(t, c, s, acme.DNSNames("new.example.com"), nil)
	wantIs(t, err, acme.ErrCertificateMismatch)
}

// TestPollingObeysRetryAfter: after the challenge is accepted, the CA
// answers two authorization polls with "pending" and a Retry-After, first in
// seconds, then as an HTTP date; the client must wait that long each time.
func TestPollingObeysRetryAfter(t *testing.T) {
	t.Parallel()
	var (
		mu       sync.Mutex
		accepted bool
		polls    []time.Time
		// Pebble may validate before it answers the challenge POST, and
		// a challenge answered "valid" is not polled: the solver holds
		// the validation until the first poll.
		firstPoll = make(chan struct{})
	)
	ca := faultCA(t, func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case strings.HasPrefix(r.URL.Path, "/chalZ/"):
			accepted = true
		case accepted && strings.HasPrefix(r.URL.Path, "/authZ/"):
			polls = append(polls, time.Now())
			switch len(polls) {
			case 1:
				close(firstPoll)
				w.Header().Set("Retry-After", "1")
			case 2:
				w.Header().Set("Retry-After", time.Now().Add(2*time.Second).UTC().Format(http.TimeFormat))
			default:
				return false
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Replay-Nonce", fmt.Sprintf("cmV0cnk%d", len(polls)))
			io.WriteString(w, `{"status":"pending","identifier":{"type":"dns","value":"retry.example.com"},"challenges":[]}`)
			return true
		}
		return false
	})
	s := newHTTPSolver(t, ca)
	s.gate = firstPoll
	c := registered(t, ca)
	mustObtain(t, c, s, "retry.example.com")
	mu.Lock()
	defer mu.Unlock()
	if len(polls) < 3 {
		t.Fatalf("%d authorization polls, want at least 3", len(polls))
	}
	// HTTP dates have one-second resolution: the second wait is 1–2 s.
	if gap := polls[1].Sub(polls[0]); gap < 950*time.Millisecond {
		t.Errorf("second poll %v after the first, want Retry-After 1s", gap)
	}
	if gap := polls[2].Sub(polls[1]); gap < 950*time.Millisecond {
		t.Errorf("third poll %v after the second, want the Retry-After date", gap)
	}
}
