package autotls

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/storage"
)

// countingLoads counts the Loads of a storage.
type countingLoads struct {
	storage.Storage
	n atomic.Int64
}

func (c *countingLoads) Load(ctx context.Context, key string) ([]byte, error) {
	c.n.Add(1)
	return c.Storage.Load(ctx, key)
}

func (c *countingLoads) loads() int { return int(c.n.Load()) }

// TestCertificatesStored: Certificates reads each stored value once and
// lists, for a name stored for two issuers, the certificate that expires
// last; a value that cannot be used is listed with the reason, unless
// another issuer's value for the name is good; a cancelled call fails.
func TestCertificatesStored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ca := newTestCA(t)
	const dir1, dir2 = "https://ca1.test/directory", "https://ca2.test/directory"
	store := storage.NewMemory()
	put := func(dir, name string, notAfter time.Time, covered ...string) {
		t.Helper()
		chain, key := ca.issue(t, notAfter, covered...)
		if err := StoreForTest(ctx, store, dir, name, chain, key); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	put(dir1, "both.example.com", now.Add(30*24*time.Hour), "both.example.com")
	put(dir2, "both.example.com", now.Add(60*24*time.Hour), "both.example.com")
	put(dir1, "wrong.example.com", now.Add(60*24*time.Hour), "other.example.com")
	put(dir2, "mended.example.com", now.Add(60*24*time.Hour), "mended.example.com")
	var many []string
	for i := range 40 {
		name := fmt.Sprintf("host%d.example.com", i)
		many = append(many, name)
		put(dir1, name, now.Add(time.Duration(10+i)*24*time.Hour), name)
	}
	for _, k := range []string{
		"certificates/" + issuerKey(dir1) + "/garbage.example.com.json",
		"certificates/" + issuerKey(dir1) + "/mended.example.com.json",
	} {
		if err := store.Store(ctx, k, []byte("not a certificate")); err != nil {
			t.Fatal(err)
		}
	}
	counting := &countingLoads{Storage: store}
	m := &Manager{Issuers: []Issuer{{DirectoryURL: dir1}, {DirectoryURL: dir2}}, Storage: counting}
	defer m.Close()

	infos, err := m.Certificates(ctx)
	if err != nil {
		t.Fatalf("Certificates: %v", err)
	}
	byName := map[string]record.Certificate{}
	for _, info := range infos {
		byName[info.Name] = info
	}
	if len(infos) != 4+len(many) {
		t.Errorf("%d certificates listed, want %d: %v", len(infos), 4+len(many), byName)
	}
	if n := counting.loads(); n != 6+len(many) {
		t.Errorf("%d Loads, want %d (one per stored value)", n, 6+len(many))
	}
	if b := byName["both.example.com"]; b.Issuer != dir2 || b.NotAfter.Before(now.Add(59*24*time.Hour)) || !b.Stored || b.InMemory || b.LastError != "" || b.Serial == "" || b.RenewAt.IsZero() {
		t.Errorf("both.example.com: %+v, want the second issuer's later certificate, stored, planned", b)
	}
	if w := byName["wrong.example.com"]; !strings.Contains(w.LastError, "does not cover") || w.Serial != "" {
		t.Errorf("wrong.example.com: %+v, want the reason it cannot be used", w)
	}
	if g := byName["garbage.example.com"]; !strings.Contains(g.LastError, "corrupt") || g.Issuer != dir1 {
		t.Errorf("garbage.example.com: %+v, want listed as corrupt at the first issuer", g)
	}
	if md := byName["mended.example.com"]; md.LastError != "" || md.Issuer != dir2 || md.Serial == "" {
		t.Errorf("mended.example.com: %+v, want the second issuer's good certificate and no error", md)
	}
	for i, name := range many {
		if h := byName[name]; h.Serial == "" || h.NotAfter.Before(now.Add(time.Duration(9+i)*24*time.Hour)) {
			t.Errorf("%s: %+v, want its certificate", name, h)
		}
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := m.Certificates(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Certificates with a cancelled context: %v, want context.Canceled", err)
	}
}
