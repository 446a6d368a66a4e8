package relay_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/record"
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
	o, csr := e.authorizedOrder(t, c, "flap.example.com")
	fs.set(failTimes(3, "Store", "relay/certs/"))
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

// wantStorageProblem fails unless err is the relay's serverInternal 500
// for a failed storage, saying nothing of the storage error itself.
func wantStorageProblem(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s with a failing storage succeeded", what)
	}
	p := problemOf(t, err)
	if p.Type != "urn:ietf:params:acme:error:serverInternal" || p.Status != 500 {
		t.Fatalf("%s with a failing storage: %s (HTTP %d) %q; want serverInternal 500", what, p.Type, p.Status, p.Detail)
	}
	noLeak(t, p)
}

// TestStorageFlaps: one failed storage write or read in each step of the
// flow is a serverInternal 500 that names nothing of the storage, and the
// step retried afterwards succeeds, without a duplicate: registration
// (the key's index not written), an order (its authorization not
// written), a challenge's result, the certificate download, the EAB key
// lookup and a revocation whose upstream part succeeded.
func TestStorageFlaps(t *testing.T) {
	t.Parallel()
	fs := &faultStore{Storage: storage.NewMemory()}
	e := newEnv(t, envOptions{store: fs})
	ctx := ctxT(t)
	if err := e.srv.PutTenant(ctx, relay.Tenant{ID: "team", Policy: examplePolicy()}); err != nil {
		t.Fatal(err)
	}
	eab, err := e.srv.NewEABKey(ctx, "team")
	if err != nil {
		t.Fatal(err)
	}
	c := e.client(t)
	acct := acme.Account{ExternalAccountBinding: eab}

	fs.set(failTimes(1, "Load", "relay/eab/"))
	_, err = c.Register(ctx, acct)
	wantStorageProblem(t, "newAccount (EAB lookup)", err)
	fs.set(failTimes(1, "Store", "relay/account-keys/"))
	_, err = c.Register(ctx, acct)
	wantStorageProblem(t, "newAccount (key index)", err)
	fs.set(nil)
	if _, err := c.Register(ctx, acct); err != nil {
		t.Fatalf("newAccount once the storage is back: %v", err)
	}
	first := c.AccountURL
	c.AccountURL = ""
	if _, err := c.Register(ctx, acct); err != nil || c.AccountURL != first {
		t.Fatalf("newAccount again: %q, %v; want the same account %q", c.AccountURL, err, first)
	}

	ids := acme.DNSNames("flaps.example.com")
	fs.set(failTimes(1, "Store", "relay/authz/"))
	_, err = c.NewOrder(ctx, acme.OrderRequest{Identifiers: ids})
	wantStorageProblem(t, "newOrder", err)
	fs.set(nil)
	o, err := c.NewOrder(ctx, acme.OrderRequest{Identifiers: ids})
	if err != nil {
		t.Fatal(err)
	}

	a, err := c.GetAuthorization(ctx, o.Authorizations[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range a.Challenges {
		if ch.Type != acme.ChallengeHTTP01 {
			continue
		}
		if err := e.down.Present(ctx, ch); err != nil {
			t.Fatal(err)
		}
		fs.set(failTimes(1, "Store", "relay/authz/"))
		_, err = c.AcceptChallenge(ctx, ch)
		wantStorageProblem(t, "challenge (storing the result)", err)
		fs.set(nil)
		got, err := c.AcceptChallenge(ctx, ch)
		if err != nil || got.Status != acme.StatusValid {
			t.Fatalf("challenge once the storage is back: %+v, %v; want valid", got, err)
		}
		e.down.CleanUp(ctx, ch)
	}

	key := newKey(t)
	csr, _ := acme.CSR(key, ids)
	got, err := c.FinalizeOrder(ctx, o, csr)
	if err == nil && got.Status == acme.StatusProcessing {
		got, err = c.WaitOrder(ctx, got)
	}
	if err != nil || got.Status != acme.StatusValid {
		t.Fatalf("finalize: %+v, %v", got, err)
	}
	fs.set(failTimes(1+acme.MaxTransientRetries, "Load", "relay/certs/")) // POST-as-GET is retried
	_, err = c.FetchCertificate(ctx, got.Certificate)
	wantStorageProblem(t, "certificate download", err)
	fs.set(nil)
	chains, err := c.FetchCertificate(ctx, got.Certificate)
	if err != nil {
		t.Fatal(err)
	}

	// The upstream revokes; storing that fails; the client's retry finds
	// the upstream's alreadyRevoked and the relay records it.
	der := chains[0].Certificates[0].Raw
	fs.set(failTimes(1, "Store", "relay/certs/"))
	wantStorageProblem(t, "revocation (storing it)", c.RevokeCertificate(ctx, der, nil, acme.ReasonUnspecified))
	fs.set(nil)
	if err := c.RevokeCertificate(ctx, der, nil, acme.ReasonUnspecified); err != nil {
		t.Fatalf("revocation retried: %v", err)
	}
	wantProblem(t, c.RevokeCertificate(ctx, der, nil, acme.ReasonUnspecified), "alreadyRevoked", 400)
}

// TestPanicRecordingIssuance: a panic while the background issuance is
// recorded (here an OnDecision hook that panics at the issue record)
// does not take the relay down; the order was recorded before it.
func TestPanicRecordingIssuance(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{modify: func(s *relay.Server) {
		s.OnDecision = func(r record.Audit) {
			if r.Operation == relay.OperationPrefix+"issue" {
				panic("hook bug")
			}
		}
	}})
	c := e.registered(t)
	cert, err := e.obtain(t, c, acme.DNSNames("hook.example.com"), nil)
	if err != nil || cert.Leaf() == nil {
		t.Fatalf("obtain with a panicking hook: %v", err)
	}
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
}
