package relay_test

import (
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/relay"
	"github.com/tlsmint/tlsmint/storage"
)

// Load test figures (docs: BENCHMARKS.md, "relay under load").
const (
	loadClients = 20
	loadOrders  = 500
)

// retryCounter counts a client's repeated attempts (rejected nonces,
// transient failures) and its badNonce answers.
type retryCounter struct {
	retries, badNonce atomic.Int64
}

func (r *retryCounter) ObserveExchange(ex acme.Exchange) {
	r.retries.Add(int64(ex.Retries))
	if ex.ProblemType == acme.ErrBadNonce.Type {
		r.badNonce.Add(1)
	}
}

// opCounter counts the storage operations on the relay's keys.
type opCounter struct{ n atomic.Int64 }

func (o *opCounter) wrap(s storage.Storage) *faultStore {
	f := &faultStore{Storage: s}
	f.set(func(_, key string) bool {
		if strings.HasPrefix(key, "relay/") {
			o.n.Add(1)
		}
		return false
	})
	return f
}

// percentile returns the p-th percentile of sorted durations.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// runLoad has loadClients clients obtain loadOrders single-name
// certificates between them, each client sequentially, and returns the
// latencies sorted and the wall time.
func runLoad(t *testing.T, clients []*acme.Client, solver acme.Solver, prefix string) ([]time.Duration, time.Duration) {
	t.Helper()
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	errs := make(chan error, len(clients))
	start := time.Now()
	for ci, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := newKey(t)
			for i := range loadOrders / len(clients) {
				t0 := time.Now()
				_, err := c.Obtain(ctxT(t), acme.ObtainRequest{
					Identifiers: acme.DNSNames(fmt.Sprintf("%s%d-%d.example.com", prefix, ci, i)),
					CertKey:     key,
					Solvers:     map[string]acme.Solver{acme.ChallengeHTTP01: solver},
				})
				if err != nil {
					errs <- fmt.Errorf("client %d order %d: %w", ci, i, err)
					return
				}
				mu.Lock()
				lat = append(lat, time.Since(t0))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	slices.Sort(lat)
	return lat, wall
}

// TestLoadReplicasPostgres: 20 downstream clients obtain 500
// certificates between them through two relay replicas on PostgreSQL
// with shared nonces, behind a balancer that sends every connection to
// the next replica; the same load directly against the upstream is the
// baseline. Every order succeeds, the upstream sees exactly one order
// per certificate, no client gets more than one badNonce, and the test
// logs orders/s, p50/p99 latency (and what the relay adds) and storage
// operations per order for BENCHMARKS.md.
func TestLoadReplicasPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("load test: not with -short")
	}
	stores := postgresStores(t, 2)
	var ops opCounter
	e := newEnv(t, envOptions{store: ops.wrap(stores[0]), noServe: true, modify: func(s *relay.Server) {
		s.BaseURL, s.SharedNonces, s.AuditLog = "https://example.com", true, nil
	}})
	second := &relay.Server{Storage: ops.wrap(stores[1]), BaseURL: "https://example.com", Upstreams: e.srv.Upstreams, Validator: e.srv.Validator, SharedNonces: true}
	t.Cleanup(func() { second.Close() })
	lb := &roundRobin{balancer: balancer{replicas: []*httptest.Server{newTLSServer(t, e.srv), newTLSServer(t, second)}}}
	e.ts = lb.replicas[0]
	ctx := ctxT(t)

	// The baseline: the same clients directly against the upstream.
	var direct []*acme.Client
	for range loadClients {
		c := &acme.Client{DirectoryURL: e.ca.DirectoryURL(), Key: newKey(t), HTTPClient: e.ca.HTTPClient(), PollInterval: 10 * time.Millisecond}
		if _, err := c.Register(ctx, acme.Account{TermsOfServiceAgreed: true}); err != nil {
			t.Fatal(err)
		}
		direct = append(direct, c)
	}
	dlat, dwall := runLoad(t, direct, e.up, "d")

	eab := e.tenant(t, "team", examplePolicy())
	var clients []*acme.Client
	counters := make([]*retryCounter, loadClients)
	for i := range loadClients {
		counters[i] = &retryCounter{}
		c := &acme.Client{DirectoryURL: "https://example.com/directory", Key: newKey(t), HTTPClient: lb.client(), PollInterval: 10 * time.Millisecond, Observer: counters[i]}
		if _, err := c.Register(ctx, acme.Account{ExternalAccountBinding: eab}); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	e.ca.ResetCounts()
	ops.n.Store(0)
	rlat, rwall := runLoad(t, clients, e.down, "r")
	if n, f := e.ca.Requests("newOrder"), e.ca.Requests("finalize"); n != loadOrders || f != loadOrders {
		t.Errorf("upstream saw %d newOrders and %d finalizations for %d certificates, want one each", n, f, loadOrders)
	}
	for i, c := range counters {
		if n := c.badNonce.Load(); n > 1 {
			t.Errorf("client %d got %d badNonce answers, want at most 1", i, n)
		}
	}
	var retries int64
	for _, c := range counters {
		retries += c.retries.Load()
	}
	t.Logf("direct: %d certificates in %v: %.1f/s, p50 %v, p99 %v", len(dlat), dwall.Round(time.Millisecond), float64(len(dlat))/dwall.Seconds(), percentile(dlat, 0.5).Round(100*time.Microsecond), percentile(dlat, 0.99).Round(100*time.Microsecond))
	t.Logf("relay (2 replicas, PostgreSQL, shared nonces): %d certificates in %v: %.1f/s, p50 %v (+%v), p99 %v (+%v); %.1f storage operations per order; %d client retries",
		len(rlat), rwall.Round(time.Millisecond), float64(len(rlat))/rwall.Seconds(),
		percentile(rlat, 0.5).Round(100*time.Microsecond), (percentile(rlat, 0.5) - percentile(dlat, 0.5)).Round(100*time.Microsecond),
		percentile(rlat, 0.99).Round(100*time.Microsecond), (percentile(rlat, 0.99) - percentile(dlat, 0.99)).Round(100*time.Microsecond),
		float64(ops.n.Load())/float64(len(rlat)), retries)
}
