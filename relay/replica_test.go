package relay_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testenv"
	"github.com/tlsmint/tlsmint/relay"
	"github.com/tlsmint/tlsmint/storage"
	"github.com/tlsmint/tlsmint/storage/postgres"
)

// balancer is a client-side "load balancer": every new connection to the
// relay's name goes to the replica target selects.
type balancer struct {
	replicas []*httptest.Server
	target   atomic.Int32
}

func (b *balancer) client() *http.Client {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: b.replicas[0].Client().Transport.(*http.Transport).TLSClientConfig.RootCAs, ServerName: "example.com"},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, b.replicas[b.target.Load()].Listener.Addr().String())
		},
		DisableKeepAlives: true, // every request is a new connection: the balancer decides each time
	}
	return &http.Client{Transport: tr}
}

// testReplicas runs one client's order across two relay replicas sharing
// storage: the order placed and validated through one, finalized and
// downloaded through the other, revoked through the first. A nonce is
// redeemed by the replica that issued it: the client's badNonce retry
// takes the other's fresh nonce.
func testReplicas(t *testing.T, store1, store2 storage.Storage) {
	e := newEnv(t, envOptions{store: store1, noServe: true, modify: func(s *relay.Server) { s.BaseURL = "https://example.com" }})
	second := &relay.Server{Storage: store2, BaseURL: "https://example.com", Upstreams: e.srv.Upstreams, Validator: e.srv.Validator, AuditLog: e.log}
	t.Cleanup(func() { second.Close() })
	lb := &balancer{replicas: []*httptest.Server{newTLSServer(t, e.srv), newTLSServer(t, second)}}
	eab := e.tenant(t, "team", examplePolicy())
	c := &acme.Client{DirectoryURL: "https://example.com/directory", Key: newKey(t), HTTPClient: lb.client(), PollInterval: 10 * time.Millisecond}
	ctx := ctxT(t)
	if _, err := c.Register(ctx, acme.Account{ExternalAccountBinding: eab}); err != nil {
		t.Fatalf("Register through replica 1: %v", err)
	}
	o, csr := e.authorizedOrder(t, c, "replica.example.com")
	lb.target.Store(1)
	final, err := c.FinalizeOrder(ctx, o, csr)
	if err != nil {
		t.Fatalf("finalize through replica 2: %v", err)
	}
	chains, err := c.FetchCertificate(ctx, final.Certificate)
	if err != nil {
		t.Fatalf("download through replica 2: %v", err)
	}
	lb.target.Store(0)
	if err := c.RevokeCertificate(ctx, chains[0].Leaf().Raw, nil, acme.ReasonSuperseded); err != nil {
		t.Fatalf("revoke through replica 1: %v", err)
	}
	if err := e.ca.Revoke(chains[0].Leaf(), 0); err == nil {
		t.Fatal("not revoked upstream")
	}
}

func TestReplicasSharingStorage(t *testing.T) {
	t.Parallel()
	m := storage.NewMemory()
	testReplicas(t, m, m)
}

func TestReplicasSharingPostgres(t *testing.T) {
	stores := postgresStores(t, 2)
	t.Parallel()
	testReplicas(t, stores[0], stores[1])
}

// postgresStores returns n PostgreSQL storages on the same new tables
// (dropped when the test ends), or skips the test without
// TLSMINT_TEST_POSTGRES.
func postgresStores(t testing.TB, n int) []storage.Storage {
	t.Helper()
	dsn := testenv.Postgres(t)
	b := make([]byte, 5)
	rand.Read(b)
	prefix := "relay" + hex.EncodeToString(b) + "_"
	t.Cleanup(func() { dropTables(t, dsn, prefix) })
	var out []storage.Storage
	for range n {
		s, err := postgres.New(ctxT(t), postgres.Config{DSN: dsn, TablePrefix: prefix})
		if err != nil {
			t.Fatalf("postgres.New: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		out = append(out, s)
	}
	return out
}

// dropTables removes a test's PostgreSQL tables.
func dropTables(t testing.TB, dsn, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := postgres.Drop(ctx, postgres.Config{DSN: dsn, TablePrefix: prefix}); err != nil {
		t.Errorf("clean-up: %v", err)
	}
}
