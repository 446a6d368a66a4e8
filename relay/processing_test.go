package relay_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/relay"
)

// gateSolver holds every upstream challenge until gate is closed (or its
// context ends), then answers it with next.
type gateSolver struct {
	gate    chan struct{}
	entered chan struct{}
	next    acme.Solver
}

func (g *gateSolver) Present(ctx context.Context, ch acme.Challenge) error {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.next.Present(ctx, ch)
}

func (g *gateSolver) CleanUp(ctx context.Context, ch acme.Challenge) error {
	return g.next.CleanUp(ctx, ch)
}

// TestFinalizeProcessing: when the upstream takes longer than
// FinalizeWait, finalize answers "processing" with a Retry-After and the
// client's polls find the order valid once the upstream is done.
func TestFinalizeProcessing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{modify: func(s *relay.Server) { s.FinalizeWait = 10 * time.Millisecond }})
	g := &gateSolver{gate: make(chan struct{}), entered: make(chan struct{}, 1), next: e.up}
	e.upstream.Solvers[acme.ChallengeHTTP01] = g
	c := e.registered(t)
	ctx := ctxT(t)
	o, csr := e.authorizedOrder(t, c, "slow.example.com")
	// Finalize raw, to see the first answer.
	code, p, hdr := e.finalizeRaw(t, c, o, csr)
	if code != 200 || p != nil || hdr.Get("Retry-After") != "1" {
		t.Fatalf("finalize: %d %v Retry-After %q; want 200 processing with Retry-After 1", code, p, hdr.Get("Retry-After"))
	}
	<-g.entered // the upstream issuance is under way, and held
	got, err := c.GetOrder(ctx, o.URL)
	if err != nil || got.Status != acme.StatusProcessing {
		t.Fatalf("order while the upstream works: %+v, %v; want processing", got, err)
	}
	close(g.gate)
	done, err := c.WaitOrder(ctx, got)
	if err != nil || done.Status != acme.StatusValid || done.Certificate == "" {
		t.Fatalf("WaitOrder: %+v, %v; want valid with a certificate", done, err)
	}
}

// TestCloseDuringIssuance: Close cancels a running upstream issuance and
// waits for it; the order stays processing and says that the relay shut
// down, and the relay that reads it next (here: a new one on the same
// storage, after a restart) resumes the issuance to a valid order. The
// interrupted upstream order was never finalized: one certificate only.
func TestCloseDuringIssuance(t *testing.T) {
	t.Parallel()
	e, h := newSwapEnv(t, envOptions{modify: func(s *relay.Server) { s.FinalizeWait = 10 * time.Millisecond }})
	g := &gateSolver{gate: make(chan struct{}), entered: make(chan struct{}, 1), next: e.up}
	e.upstream.Solvers[acme.ChallengeHTTP01] = g
	c := e.registered(t)
	ctx := ctxT(t)
	o, csr := e.authorizedOrder(t, c, "closed.example.com")
	if code, p, _ := e.finalizeRaw(t, c, o, csr); code != 200 {
		t.Fatalf("finalize: %d %v", code, p)
	}
	<-g.entered
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	// The closed relay answers 503; a new one on the same storage reads
	// the order as processing, interrupted by the shutdown, and resumes it.
	if code, p, _ := e.post(t, o.URL, "application/jose+json", []byte(`{}`)); code != 503 || p == nil {
		t.Fatalf("a closed relay answered %d %v, want 503", code, p)
	}
	next := &relay.Server{Storage: e.store, Upstreams: e.srv.Upstreams, Validator: e.srv.Validator}
	t.Cleanup(func() { next.Close() })
	h.set(next)
	got, err := c.GetOrder(ctx, o.URL)
	if err != nil || got.Status != acme.StatusProcessing || got.Error == nil || !strings.Contains(got.Error.Detail, "shut down") {
		t.Fatalf("order after Close: %+v, %v; want processing, saying the relay shut down", got, err)
	}
	close(g.gate)
	done, err := c.WaitOrder(ctx, got)
	if err != nil || done.Status != acme.StatusValid || done.Certificate == "" {
		t.Fatalf("after the restart: %+v, %v; want the resumed issuance valid", done, err)
	}
	if n := e.ca.Requests("finalize"); n != 1 {
		t.Fatalf("%d upstream finalizations, want 1", n)
	}
}
