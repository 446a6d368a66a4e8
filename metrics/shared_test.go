package metrics

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/statuspage"
	"github.com/tlsmint/tlsmint/storage"
)

// indexLists counts the Lists of the schedule index: one per snapshot
// build and issuer.
type indexLists struct {
	storage.Storage
	mu sync.Mutex
	n  int
}

func (s *indexLists) List(ctx context.Context, prefix string) ([]string, error) {
	if strings.HasPrefix(prefix, "index/") {
		s.mu.Lock()
		s.n++
		s.mu.Unlock()
	}
	return s.Storage.List(ctx, prefix)
}

func (s *indexLists) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// importTest stores a certificate for name, valid for 60 days.
func importTest(t *testing.T, store storage.Storage, dir, name string) {
	t.Helper()
	c := testsetup.SelfSigned(t, &x509.Certificate{SerialNumber: big.NewInt(3), DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(60 * 24 * time.Hour)})
	if err := autotls.ImportCertificate(context.Background(), store, autotls.ImportedCertificate{
		Directory: dir, Name: name, ChainPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Leaf.Raw}), Key: c.PrivateKey.(crypto.Signer),
	}); err != nil {
		t.Fatal(err)
	}
}

// TestSharedSnapshot: the collector and the status page of one Manager
// read one snapshot: a scrape builds it, the page that follows reads it
// again without a second build, and both show the same name.
func TestSharedSnapshot(t *testing.T) {
	const dir = "https://ca.shared.test/directory"
	mem := storage.NewMemory()
	importTest(t, mem, dir, "shared.example.com")
	store := &indexLists{Storage: mem}
	m := &autotls.Manager{Issuers: []autotls.Issuer{{DirectoryURL: dir}}, Storage: store}
	defer m.Close()
	c := New(m, Options{})
	defer c.Close()

	got := scrape(t, c)
	if v := got.value(t, "tlsmint_certificate_ready", "name=shared.example.com"); v != 1 {
		t.Errorf("ready: %v, want 1", v)
	}
	h := &statuspage.Handler{Manager: m}
	r := httptest.NewRequest(http.MethodGet, "/?format=json", nil)
	r.RemoteAddr = "127.0.0.1:1"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if !strings.Contains(w.Body.String(), `"name": "shared.example.com"`) {
		t.Errorf("the page lacks the name:\n%s", w.Body.String())
	}
	if n := store.count(); n != 1 {
		t.Errorf("%d snapshot builds for a scrape and a page, want 1", n)
	}
}

// TestConstLabels: the collectors of two Managers register in one
// registry when their ConstLabels set them apart, every series carrying
// the label; without labels the second registration fails.
func TestConstLabels(t *testing.T) {
	a := New(nil, Options{ConstLabels: prometheus.Labels{"manager": "public"}})
	b := New(nil, Options{ConstLabels: prometheus.Labels{"manager": "internal"}})
	defer a.Close()
	defer b.Close()
	a.OnEvent(autotls.Event{Type: autotls.EventRenewed, Name: "a.example.com", Issuer: "https://ca.test/dir", NotAfter: time.Now().Add(time.Hour)})
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(a); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(b); err != nil {
		t.Fatalf("registering the second collector: %v", err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	seen := map[string]bool{}
	for _, f := range fams {
		for _, s := range f.GetMetric() {
			v := label(s, "manager")
			if v == "" {
				t.Errorf("%s has a series without the manager label", f.GetName())
			}
			seen[v] = true
		}
	}
	if !seen["public"] || !seen["internal"] {
		t.Errorf("series of managers %v, want public and internal", seen)
	}
	lint(t, a)

	plain := prometheus.NewPedanticRegistry()
	if err := plain.Register(New(nil, Options{})); err != nil {
		t.Fatal(err)
	}
	if err := plain.Register(New(nil, Options{})); err == nil {
		t.Error("two collectors without labels registered in one registry")
	}
}
