package statuspage

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/storage"
)

// scaleDir is the issuer of the stores indexedStore builds, and
// scaleKey its storage key segment (autotls's issuerKey of it).
const (
	scaleDir = "https://ca.scale.test/directory"
	scaleKey = "ca.scale.test-directory"
)

// indexedStore builds what a Manager of n names leaves in its storage,
// without issuing: the schedule index of every name (index/, as the
// Manager writes it), and, for the `real` names that expire soonest, a
// real certificate imported with autotls.ImportCertificate, so that a
// page of them loads what a page of a real fleet loads. One name in a
// hundred failed its last renewal. Name i expires i minutes after the
// first.
func indexedStore(tb testing.TB, n, real int, now time.Time) storage.Storage {
	tb.Helper()
	ctx := context.Background()
	store := storage.NewMemory()
	ca := testsetup.NewAuthority(tb, "scale CA")
	notBefore := now.Add(-30 * 24 * time.Hour).Truncate(time.Second)
	const buckets = 1024
	index := make([]map[string][4]int64, buckets)
	for i := range n {
		name := fmt.Sprintf("host%07d.scale.example.com", i)
		notAfter := now.Add(24*time.Hour + time.Duration(i)*time.Minute).Truncate(time.Second)
		var failedAt int64
		if i%100 == 7 {
			failedAt = now.Add(-time.Hour).Unix()
		}
		b := i % buckets
		if index[b] == nil {
			index[b] = map[string][4]int64{}
		}
		index[b][name] = [4]int64{notAfter.Unix(), notAfter.Add(-20 * 24 * time.Hour).Unix(), notBefore.Unix(), failedAt}
		if i >= real {
			continue
		}
		c := ca.Issue(tb, &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), DNSNames: []string{name}, NotBefore: notBefore, NotAfter: notAfter})
		chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Leaf.Raw}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})...)
		if err := autotls.ImportCertificate(ctx, store, autotls.ImportedCertificate{Directory: scaleDir, Name: name, ChainPEM: chain, Key: c.PrivateKey.(crypto.Signer)}); err != nil {
			tb.Fatal(err)
		}
	}
	for b, names := range index {
		if names == nil {
			continue
		}
		v, err := json.Marshal(map[string]any{"version": 1, "issuer": scaleDir, "names": names})
		if err != nil {
			tb.Fatal(err)
		}
		if err := store.Store(ctx, fmt.Sprintf("index/%s/%03x.json", scaleKey, b), v); err != nil {
			tb.Fatal(err)
		}
	}
	return store
}

// certLoads counts the Loads of stored certificates.
type certLoads struct {
	storage.Storage
	mu sync.Mutex
	n  int
}

func (c *certLoads) Load(ctx context.Context, key string) ([]byte, error) {
	if strings.HasPrefix(key, "certificates/") {
		c.mu.Lock()
		c.n++
		c.mu.Unlock()
	}
	return c.Storage.Load(ctx, key)
}

func (c *certLoads) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// A page of a Manager of 5,000 names loads only the certificates it
// shows (a stored certificate the index does not know is loaded once, for
// the snapshot): the first page, the next through its cursor, and the
// failing ones through ?state=failing, each with its loaded serial, and
// the counts cover every name.
func TestPageLoadsOnlyItsRows(t *testing.T) {
	now := time.Now()
	const n, real = 5000, 120
	store := &certLoads{Storage: indexedStore(t, n, real, now)}
	m := &autotls.Manager{Issuers: []autotls.Issuer{{DirectoryURL: scaleDir}}, Storage: store}
	defer m.Close()
	h := &Handler{Manager: m, Now: func() time.Time { return now }}

	st := decodeStatus(t, get(t, h, "/?format=json&limit=50", nil))
	if st.Total != n || st.Counts[StateFailing] != n/100 || len(st.Certificates) != 50 || st.Next == "" {
		t.Fatalf("total %d, counts %v, %d rows, next %q; want %d, %d failing, 50, a cursor", st.Total, st.Counts, len(st.Certificates), st.Next, n, n/100)
	}
	for i, c := range st.Certificates {
		if want := fmt.Sprintf("host%07d.scale.example.com", i); c.Name != want || c.Serial == "" {
			t.Fatalf("row %d: %s serial %q, want %s loaded", i, c.Name, c.Serial, want)
		}
	}
	// 50 rows; the failing certificates of the first screen are among
	// them, and those further down need attention (MaxAttention).
	if got := store.count(); got > 50+MaxAttention {
		t.Errorf("%d certificates loaded for a page of 50, want at most %d", got, 50+MaxAttention)
	}
	before := store.count()
	st2 := decodeStatus(t, get(t, h, "/?format=json&limit=50&after="+st.Next, nil))
	if len(st2.Certificates) != 50 || st2.Certificates[0].Name != "host0000050.scale.example.com" {
		t.Errorf("the second page starts with %+v, want host0000050", st2.Certificates[:1])
	}
	if got := store.count() - before; got > 50 {
		t.Errorf("the second page loaded %d certificates, want at most 50", got)
	}
	failing := decodeStatus(t, get(t, h, "/?format=json&state=failing&limit=5", nil))
	if failing.Total != n/100 || len(failing.Certificates) != 5 || failing.Certificates[1].Name != "host0000107.scale.example.com" {
		t.Errorf("state=failing: total %d, %+v", failing.Total, failing.Certificates)
	}
	// The rows the index lists but that have no stored certificate
	// (beyond the first 120 here) are shown from the snapshot.
	if c := failing.Certificates[2]; c.Name != "host0000207.scale.example.com" || c.State != StateFailing || c.NotAfter.IsZero() {
		t.Errorf("row from the snapshot alone: %+v", c)
	}
}

// BenchmarkPageScale is a status page view, the first page (HTML and
// JSON, default MaxRows) of a Manager with 1,000 to 1,000,000 names (the
// schedule index, and real certificates for the first 200 rows), the
// figures of BENCHMARKS.md. The Manager's snapshot is built before the
// timing, as a serving Manager keeps it: each view then pays for its page
// only. ShareFor is off: every view builds its page anew.
func BenchmarkPageScale(b *testing.B) {
	now := time.Now()
	for _, n := range []int{1000, 10_000, 100_000, 1_000_000} {
		store := indexedStore(b, n, 200, now)
		m := &autotls.Manager{Issuers: []autotls.Issuer{{DirectoryURL: scaleDir}}, Storage: store}
		if _, err := m.RefreshSnapshot(context.Background()); err != nil {
			b.Fatal(err)
		}
		for _, format := range []string{"html", "json"} {
			b.Run(fmt.Sprintf("names=%d/%s", n, format), func(b *testing.B) {
				h := &Handler{Manager: m, Now: func() time.Time { return now }}
				h.share.fresh = -1
				benchServe(b, h, "/?format="+format)
			})
		}
		m.Close()
		runtime.GC()
	}
}
