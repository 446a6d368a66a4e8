package statuspage

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/record"
)

// TestRequestsShareOneRead: page loads that arrive while the status is
// read wait for that read instead of each reading the storage again, also
// when the request that started it goes away; a load after ShareFor reads
// again; a read that panics fails its waiters and the next load reads
// anew.
func TestRequestsShareOneRead(t *testing.T) {
	t.Parallel()
	var reads atomic.Int32
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	h := &Handler{
		Now: func() time.Time { return t0 },
		source: func(ctx context.Context) ([]record.Certificate, error) {
			reads.Add(1)
			select {
			case started <- struct{}{}:
			default:
			}
			<-release
			if ctx.Err() != nil {
				t.Error("the shared read's context ended with the request that started it")
			}
			return trio(), nil
		},
	}

	// The first load's client goes away while the read runs.
	first, cancel := context.WithCancel(context.Background())
	firstDone := make(chan *httptest.ResponseRecorder)
	go func() {
		r := httptest.NewRequestWithContext(first, http.MethodGet, "/?format=json", nil)
		r.RemoteAddr = "127.0.0.1:50000"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		firstDone <- w
	}()
	<-started
	const n = 20
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() { codes[i] = get(t, h, "/?format=json", nil).Code })
	}
	waitUntil(t, func() bool { return waiters(h) == n })
	cancel()
	close(release)
	wg.Wait()
	<-firstDone
	for i, c := range codes {
		if c != http.StatusOK {
			t.Errorf("load %d: %d, want 200", i, c)
		}
	}
	if got := reads.Load(); got != 1 {
		t.Errorf("%d reads for %d concurrent loads, want 1", got, n+1)
	}

	// Within ShareFor the status is reused; after it, read again.
	get(t, h, "/", nil)
	if got := reads.Load(); got != 1 {
		t.Errorf("a load right after: %d reads, want still 1", got)
	}
	h.share.mu.Lock()
	h.share.fresh = -1
	h.share.mu.Unlock()
	get(t, h, "/", nil)
	if got := reads.Load(); got != 2 {
		t.Errorf("a load after ShareFor: %d reads, want 2", got)
	}

	// A read that panics: the request that ran it panics (net/http
	// recovers it), its waiter gets 503, the next load reads again.
	release = make(chan struct{})
	var panicking atomic.Bool
	panicking.Store(true)
	var preads atomic.Int32
	p := &Handler{
		Now: func() time.Time { return t0 },
		source: func(context.Context) ([]record.Certificate, error) {
			preads.Add(1)
			if panicking.Load() {
				<-release
				panic("a source that panics")
			}
			return trio(), nil
		},
	}
	panicked := make(chan any, 1)
	go func() {
		defer func() { panicked <- recover() }()
		get(t, p, "/", nil)
	}()
	waitUntil(t, func() bool { return preads.Load() == 1 })
	waiter := make(chan int, 1)
	go func() { waiter <- get(t, p, "/", nil).Code }()
	waitUntil(t, func() bool { return waiters(p) == 1 })
	close(release)
	if v := <-panicked; v == nil {
		t.Error("the panic did not reach the request that ran the read")
	}
	if c := <-waiter; c != http.StatusServiceUnavailable {
		t.Errorf("a load waiting for the read that panicked: %d, want 503", c)
	}
	panicking.Store(false)
	if c := get(t, p, "/", nil).Code; c != http.StatusOK || preads.Load() != 2 {
		t.Errorf("the load after the panic: %d after %d reads, want 200 after 2", c, preads.Load())
	}
}

// waiters is the number of requests waiting for a build.
func waiters(h *Handler) int {
	h.share.mu.Lock()
	defer h.share.mu.Unlock()
	return h.share.waiters
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}
