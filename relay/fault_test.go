package relay_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/relay"
	"github.com/tlsmint/tlsmint/storage"
)

// errFault is what a faultStore's failing operations return: it carries
// a file path, which no client may ever see.
var errFault = errors.New("storage fault: write /var/lib/tlsmint/relay/secret: input/output error")

// A faultStore passes every operation to a storage.Storage, except those
// its rule picks: rule gets the operation ("Store", "Load", "List",
// "Stat", "Lock", "Delete") and the key (or lock name) and returns true to
// fail it with errFault.
type faultStore struct {
	storage.Storage
	mu   sync.Mutex
	rule func(op, key string) bool
}

func (f *faultStore) set(rule func(op, key string) bool) { f.mu.Lock(); f.rule = rule; f.mu.Unlock() }

func (f *faultStore) fails(op, key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rule != nil && f.rule(op, key)
}

func (f *faultStore) Store(ctx context.Context, key string, v []byte) error {
	if f.fails("Store", key) {
		return errFault
	}
	return f.Storage.Store(ctx, key, v)
}

func (f *faultStore) Load(ctx context.Context, key string) ([]byte, error) {
	if f.fails("Load", key) {
		return nil, errFault
	}
	return f.Storage.Load(ctx, key)
}

func (f *faultStore) Delete(ctx context.Context, key string) error {
	if f.fails("Delete", key) {
		return errFault
	}
	return f.Storage.Delete(ctx, key)
}

func (f *faultStore) List(ctx context.Context, prefix string) ([]string, error) {
	if f.fails("List", prefix) {
		return nil, errFault
	}
	return f.Storage.List(ctx, prefix)
}

func (f *faultStore) Stat(ctx context.Context, key string) (storage.KeyInfo, error) {
	if f.fails("Stat", key) {
		return storage.KeyInfo{}, errFault
	}
	return f.Storage.Stat(ctx, key)
}

func (f *faultStore) Lock(ctx context.Context, name string) (func() error, error) {
	if f.fails("Lock", name) {
		return nil, errFault
	}
	return f.Storage.Lock(ctx, name)
}

// failTimes returns a rule failing the first n matching operations.
func failTimes(n int, op, keyPrefix string) func(string, string) bool {
	return func(o, k string) bool {
		if o != op || !strings.HasPrefix(k, keyPrefix) || n == 0 {
			return false
		}
		n--
		return true
	}
}

// noLeak fails the test when a problem a client got says more than it
// should about the relay's insides.
func noLeak(t testing.TB, p *acme.Problem) {
	t.Helper()
	if p == nil {
		return
	}
	if strings.Contains(p.Detail, "/var/lib") || strings.Contains(p.Detail, "input/output") || strings.Contains(p.Detail, "storage fault") {
		t.Errorf("problem %s leaks the storage error: %q", p.Type, p.Detail)
	}
}

// TestFinalizeCertStoreFlaps: the upstream issued the certificate, and
// the storage fails the first writes of it: the relay keeps trying, the
// order is valid and the certificate downloads — a certificate paid for
// is not thrown away for a storage hiccup, nor asked for twice.
func TestFinalizeCertStoreFlaps(t *testing.T) {
	t.Parallel()
	fs := &faultStore{Storage: storage.NewMemory()}
	e := newEnv(t, envOptions{store: fs})
	c := e.registered(t)
	ctx := ctxT(t)
	ids := acme.DNSNames("flap.example.com")
	o, err := c.NewOrder(ctx, acme.OrderRequest{Identifiers: ids})
	if err != nil {
		t.Fatal(err)
	}
	authorize(t, e, c, o)
	fs.set(failTimes(3, "Store", "relay/certs/"))
	csr, _ := acme.CSR(newKey(t), ids)
	got, err := c.FinalizeOrder(ctx, o, csr)
	if err == nil && got.Status == acme.StatusProcessing {
		got, err = c.WaitOrder(ctx, got)
	}
	if err != nil || got.Status != acme.StatusValid || got.Certificate == "" {
		if err != nil {
			noLeak(t, problemOf(t, err))
		}
		t.Fatalf("order after the storage flapped: %+v, %v; want valid with a certificate", got, err)
	}
	if _, err := c.FetchCertificate(ctx, got.Certificate); err != nil {
		t.Fatalf("download: %v", err)
	}
	if n := len(e.records(t, relay.OperationPrefix+"upstream")); n != 0 {
		t.Errorf("%d failed upstream issuances, want none", n)
	}
}
