package relay_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/relay"
)

// loseAnswers is the upstream client's transport with faults: the
// answers to the requests lose picks are dropped after the upstream got
// them (a reset once the request was sent), and while refuse is set,
// every request fails before it is sent.
type loseAnswers struct {
	base   http.RoundTripper
	mu     sync.Mutex
	lose   func(path string) bool
	refuse bool
	block  chan struct{} // when set, a lost answer waits for the request's end
	lost   int
}

func (l *loseAnswers) RoundTrip(req *http.Request) (*http.Response, error) {
	l.mu.Lock()
	refuse := l.refuse
	l.mu.Unlock()
	if refuse {
		return nil, fmt.Errorf("dial tcp: %w", syscall.ECONNREFUSED)
	}
	resp, err := l.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	l.mu.Lock()
	lose := l.lose != nil && l.lose(req.URL.Path)
	if lose {
		l.lost++
	}
	block := l.block
	l.mu.Unlock()
	if !lose {
		return resp, nil
	}
	resp.Body.Close()
	if block != nil {
		select {
		case block <- struct{}{}:
		default:
		}
		<-req.Context().Done()
		return nil, req.Context().Err()
	}
	return nil, fmt.Errorf("read tcp: %w", syscall.ECONNRESET)
}

// unreachableAfterFinalize puts a loseAnswers in front of the env's
// upstream that loses the first finalize answer and refuses every
// connection after it.
func unreachableAfterFinalize(e *env) *loseAnswers {
	l := faultyUpstream(e)
	l.lose = func(path string) bool {
		if strings.HasPrefix(path, "/finalize-order/") {
			l.refuse = true // from now on the upstream is unreachable (called with l.mu held)
			return true
		}
		return false
	}
	return l
}

// finalizeLost places and authorizes an order for name through c and
// finalizes it, wanting 200 (the order processing), and returns it.
func (e *env) finalizeLost(t *testing.T, c *acme.Client, name string) *acme.Order {
	t.Helper()
	o, csr := e.authorizedOrder(t, c, name)
	if code, p, _ := e.finalizeRaw(t, c, o, csr); code != 200 {
		t.Fatalf("finalize: %d %v", code, p)
	}
	return o
}

// pollOrder reads the order at url every 20 ms until done says so or
// within has passed, and returns the last read.
func pollOrder(t *testing.T, c *acme.Client, url string, within time.Duration, done func(*acme.Order) bool) *acme.Order {
	t.Helper()
	ctx := ctxT(t)
	deadline := time.Now().Add(within)
	for {
		got, err := c.GetOrder(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		if done(got) || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wantOneUpstreamOrder fails the test unless the upstream saw one
// newOrder and one finalize.
func (e *env) wantOneUpstreamOrder(t *testing.T) {
	t.Helper()
	if n, f := e.ca.Requests("newOrder"), e.ca.Requests("finalize"); n != 1 || f != 1 {
		t.Fatalf("upstream saw %d newOrders and %d finalizations, want 1 and 1", n, f)
	}
}

// faultyUpstream puts a loseAnswers in front of the env's upstream.
func faultyUpstream(e *env) *loseAnswers {
	hc := *e.upstream.Client.HTTPClient
	l := &loseAnswers{base: hc.Transport}
	hc.Transport = l
	e.upstream.Client.HTTPClient = &hc
	return l
}

// firstN returns a rule losing the first n answers to paths with prefix.
func firstN(prefix string, n int) func(string) bool {
	seen := 0
	return func(path string) bool {
		if !strings.HasPrefix(path, prefix) || seen >= n {
			return false
		}
		seen++
		return true
	}
}

// TestLostUpstreamAnswers: when the upstream issued but the answer to
// the finalization, or every try of the download, was lost, the relay
// asks the upstream for its order and delivers the certificate it
// issued: one upstream order and one finalization per certificate.
func TestLostUpstreamAnswers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		prefix string
		n      int
	}{
		{"finalize answer lost", "/finalize-order/", 1},
		{"download lost on every try", "/certZ/", acme.MaxTransientRetries + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{})
			l := faultyUpstream(e)
			l.lose = firstN(tc.prefix, tc.n)
			c := e.registered(t)
			cert, err := e.obtain(t, c, acme.DNSNames("lost.example.com"), nil)
			if err != nil {
				t.Fatalf("Obtain through the relay: %v", err)
			}
			if _, err := cert.Leaf().Verify(verifyOpts(e.ca, cert.Chain, "lost.example.com")); err != nil {
				t.Fatalf("the delivered certificate: %v", err)
			}
			if l.lost != tc.n {
				t.Fatalf("%d answers lost, want %d", l.lost, tc.n)
			}
			e.wantOneUpstreamOrder(t)
		})
	}
}

// TestLostAnswerUpstreamUnreachable: the finalize answer is lost and the
// upstream cannot be asked afterwards either: the order stays processing
// and says why (no second upstream order), and once the upstream is back
// a poll resumes it to the certificate issued the first time.
func TestLostAnswerUpstreamUnreachable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{modify: func(s *relay.Server) { s.FinalizeWait = 10 * time.Millisecond }})
	l := unreachableAfterFinalize(e)
	c := e.registered(t)
	ctx := ctxT(t)
	o := e.finalizeLost(t, c, "unreachable.example.com")
	got := pollOrder(t, c, o.URL, 30*time.Second, func(o *acme.Order) bool { return o.Error != nil || o.Status != acme.StatusProcessing })
	if got.Status != acme.StatusProcessing || got.Error == nil || !strings.Contains(got.Error.Detail, "could not be asked") {
		t.Fatalf("order while the upstream is unreachable: %+v; want processing, saying the upstream could not be asked", got)
	}
	l.mu.Lock()
	l.refuse, l.lose = false, nil
	l.mu.Unlock()
	done, err := c.WaitOrder(ctx, got)
	if err != nil || done.Status != acme.StatusValid {
		t.Fatalf("once the upstream is back: %+v, %v; want valid", done, err)
	}
	e.wantOneUpstreamOrder(t)
}

// TestResumesBounded: an issuance whose upstream stays unreachable is
// resumed by each read of the order, at most three times, from the
// upstream order it placed; the fourth read gives it up (invalid,
// saying so), and the upstream saw one order only.
func TestResumesBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{modify: func(s *relay.Server) { s.FinalizeWait = 10 * time.Millisecond }})
	unreachableAfterFinalize(e)
	c := e.registered(t)
	o := e.finalizeLost(t, c, "resumes.example.com")
	got := pollOrder(t, c, o.URL, 60*time.Second, func(o *acme.Order) bool { return o.Status != acme.StatusProcessing })
	if got.Status != acme.StatusInvalid || got.Error == nil || !strings.Contains(got.Error.Detail, "interrupted 3 times") {
		t.Fatalf("order after the resumptions: %+v; want invalid, given up after 3 interruptions", got)
	}
	e.wantOneUpstreamOrder(t)
}

// TestRestartAfterUpstreamIssued: the relay shuts down while the
// upstream's finalize answer is on its way (the upstream issued); the
// relay started next on the storage delivers that certificate, without a
// second upstream order.
func TestRestartAfterUpstreamIssued(t *testing.T) {
	t.Parallel()
	e, h := newSwapEnv(t, envOptions{modify: func(s *relay.Server) { s.FinalizeWait = 10 * time.Millisecond }})
	l := faultyUpstream(e)
	l.lose = firstN("/finalize-order/", 1)
	l.block = make(chan struct{}, 1)
	c := e.registered(t)
	ctx := ctxT(t)
	o, csr := e.authorizedOrder(t, c, "restart.example.com")
	if code, p, _ := e.finalizeRaw(t, c, o, csr); code != 200 {
		t.Fatalf("finalize: %d %v", code, p)
	}
	<-l.block // the upstream has the finalization; its answer is held
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	next := &relay.Server{Storage: e.store, Upstreams: e.srv.Upstreams, Validator: e.srv.Validator}
	t.Cleanup(func() { next.Close() })
	h.set(next)
	got, err := c.GetOrder(ctx, o.URL)
	if err != nil {
		t.Fatal(err)
	}
	done, err := c.WaitOrder(ctx, got)
	if err != nil || done.Status != acme.StatusValid || done.Certificate == "" {
		t.Fatalf("after the restart: %+v, %v; want valid", done, err)
	}
	e.wantOneUpstreamOrder(t)
}

// TestResumeAfterCrash: an order left processing by a process that died
// (no interruption recorded, no issue lock held) is left alone while a
// live issuance elsewhere could still be running it, and resumed by the
// first read after 30 seconds.
func TestResumeAfterCrash(t *testing.T) {
	t.Parallel()
	clock := &testClock{t: time.Now()}
	e := newEnv(t, envOptions{modify: func(s *relay.Server) { relay.SetClock(s, clock.now) }})
	c := e.registered(t)
	ctx := ctxT(t)
	o, csr := e.authorizedOrder(t, c, "crashed.example.com")
	if err := relay.MarkProcessing(ctx, e.srv, o.URL[strings.LastIndexByte(o.URL, '/')+1:], csr); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetOrder(ctx, o.URL)
	if err != nil || got.Status != acme.StatusProcessing || e.ca.Requests("newOrder") != 0 {
		t.Fatalf("at once: %+v, %v, %d upstream orders; want processing, none resumed", got, err, e.ca.Requests("newOrder"))
	}
	clock.advance(31 * time.Second)
	if _, err := c.GetOrder(ctx, o.URL); err != nil {
		t.Fatal(err)
	}
	done, err := c.WaitOrder(ctx, got)
	if err != nil || done.Status != acme.StatusValid {
		t.Fatalf("after 31 s: %+v, %v; want resumed to valid", done, err)
	}
	if n := e.ca.Requests("newOrder"); n != 1 {
		t.Fatalf("%d upstream orders, want 1", n)
	}
}
