package relay_test

import (
	"bytes"
	"context"
	"crypto"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/relay"
	"github.com/tlsmint/tlsmint/storage"
)

// roundRobin is a balancer that sends each new connection to the next
// replica.
type roundRobin struct {
	balancer
	next atomic.Int32
}

func (b *roundRobin) client() *http.Client {
	c := b.balancer.client()
	tr := c.Transport.(*http.Transport)
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		b.target.Store(b.next.Add(1) % int32(len(b.replicas)))
		return dial(ctx, network, addr)
	}
	return c
}

// sharedReplicas are two relay replicas with shared nonces on stores
// (the same backing store), each on its own TLS server, both answering
// for https://example.com; badNonce counts the badNonce refusals of both.
type sharedReplicas struct {
	e        *env
	servers  [2]*relay.Server
	ts       [2]*httptest.Server
	badNonce atomic.Int32
}

func newSharedReplicas(t *testing.T, store1, store2 storage.Storage) *sharedReplicas {
	t.Helper()
	r := &sharedReplicas{}
	count := func(rec record.Audit) {
		if rec.Problem == "urn:ietf:params:acme:error:badNonce" {
			r.badNonce.Add(1)
		}
	}
	r.e = newEnv(t, envOptions{store: store1, noServe: true, modify: func(s *relay.Server) {
		s.BaseURL = "https://example.com"
		s.SharedNonces = true
		s.Anonymous = &relay.Policy{Names: []string{"example.com"}, ValidationTargets: loopback()}
		s.OnDecision = count
	}})
	second := &relay.Server{
		Storage: store2, BaseURL: "https://example.com", Upstreams: r.e.srv.Upstreams, Validator: r.e.srv.Validator,
		SharedNonces: true, Anonymous: &relay.Policy{Names: []string{"example.com"}, ValidationTargets: loopback()}, OnDecision: count,
	}
	t.Cleanup(func() { second.Close() })
	r.servers = [2]*relay.Server{r.e.srv, second}
	r.ts = [2]*httptest.Server{newTLSServer(t, r.e.srv), newTLSServer(t, second)}
	return r
}

// nonce fetches a nonce from replica i.
func (r *sharedReplicas) nonce(t *testing.T, i int) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodHead, r.ts[i].URL+"/new-nonce", nil)
	resp, err := r.ts[i].Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	n := resp.Header.Get("Replay-Nonce")
	if resp.StatusCode != http.StatusOK || n == "" {
		t.Fatalf("new-nonce of replica %d: %d, nonce %q", i, resp.StatusCode, n)
	}
	return n
}

// lookup is a signed newAccount with onlyReturnExisting for a key that
// has no account: accountDoesNotExist once the nonce is accepted.
func lookup(t *testing.T, key crypto.Signer, nonce string) []byte {
	t.Helper()
	hdr := map[string]any{"alg": "ES256", "nonce": nonce, "url": "https://example.com/new-account", "jwk": jwkJSON(t, key.Public())}
	return rawJWS(t, key, hdr, []byte(`{"onlyReturnExisting": true}`))
}

// send posts body to replica i and returns the problem type's name.
func (r *sharedReplicas) send(t *testing.T, i int, body []byte) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, r.ts[i].URL+"/new-account", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/jose+json")
	resp, err := r.ts[i].Client().Do(req)
	if err != nil {
		t.Error(err)
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("Replay-Nonce") == "" {
		t.Errorf("replica %d answered without a Replay-Nonce", i)
	}
	_, name, _ := strings.Cut(string(b), "urn:ietf:params:acme:error:")
	name, _, _ = strings.Cut(name, `"`)
	return name
}

const accepted = "accountDoesNotExist" // the answer once the nonce is accepted

func testSharedNonces(t *testing.T, store1, store2 storage.Storage) {
	r := newSharedReplicas(t, store1, store2)
	key := newKey(t)

	// A nonce of replica 1 is accepted by replica 2, once; a replay is
	// refused by both.
	body := lookup(t, key, r.nonce(t, 0))
	if got := r.send(t, 1, body); got != accepted {
		t.Fatalf("replica 1's nonce at replica 2: %s, want it accepted (%s)", got, accepted)
	}
	for i := range 2 {
		if got := r.send(t, i, body); got != "badNonce" {
			t.Errorf("replayed at replica %d: %s, want badNonce", i+1, got)
		}
	}
	// And a replica's own nonce at itself.
	if got := r.send(t, 1, lookup(t, key, r.nonce(t, 1))); got != accepted {
		t.Errorf("replica 2's nonce at replica 2: %s, want accepted", got)
	}
	// A nonce with a changed MAC or cut short is refused.
	n := r.nonce(t, 0)
	forged := n[:len(n)-2] + map[bool]string{true: "AA", false: "BB"}[n[len(n)-2:] != "AA"]
	for _, bad := range []string{forged, n[:len(n)-1], n + "A", strings.Repeat("A", len(n))} {
		if got := r.send(t, 1, lookup(t, key, bad)); got != "badNonce" {
			t.Errorf("nonce %q: %s, want badNonce", bad, got)
		}
	}

	// The same request sent eight times at once to both replicas is
	// accepted exactly once.
	body = lookup(t, key, r.nonce(t, 0))
	var wg sync.WaitGroup
	var ok, refused atomic.Int32
	for i := range 8 {
		wg.Go(func() {
			switch r.send(t, i%2, body) {
			case accepted:
				ok.Add(1)
			case "badNonce":
				refused.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || refused.Load() != 7 {
		t.Fatalf("a nonce sent 8 times at once: accepted %d times, refused %d; want 1 and 7", ok.Load(), refused.Load())
	}

	// A client whose every connection goes to the other replica obtains
	// a certificate with no badNonce at all.
	r.badNonce.Store(0)
	lb := &roundRobin{balancer: balancer{replicas: r.ts[:]}}
	c := &acme.Client{DirectoryURL: "https://example.com/directory", Key: newKey(t), HTTPClient: lb.client(), PollInterval: 10 * time.Millisecond}
	if _, err := c.Register(ctxT(t), acme.Account{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.e.obtain(t, c, acme.DNSNames("shared.example.com"), nil); err != nil {
		t.Fatalf("Obtain across replicas: %v", err)
	}
	if n := r.badNonce.Load(); n != 0 {
		t.Errorf("%d badNonce refusals across replicas with shared nonces, want 0", n)
	}
	if lb.next.Load() < 8 {
		t.Errorf("only %d connections: the balancer did not alternate", lb.next.Load())
	}
}

func TestSharedNonces(t *testing.T) {
	t.Parallel()
	m := storage.NewMemory()
	testSharedNonces(t, m, m)
}

func TestSharedNoncesPostgres(t *testing.T) {
	stores := postgresStores(t, 2)
	t.Parallel()
	testSharedNonces(t, stores[0], stores[1])
}
