package revocation_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/revocation"
)

// testCA issues certificates and CRLs.
type testCA struct{ *testsetup.Authority }

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	return &testCA{testsetup.NewAuthority(t, name)}
}

func (ca *testCA) leaf(t *testing.T, serial int64, crls ...string) *x509.Certificate {
	t.Helper()
	return ca.Issue(t, &x509.Certificate{SerialNumber: big.NewInt(serial), DNSNames: []string{"leaf.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), CRLDistributionPoints: crls}).Leaf
}

func (ca *testCA) crl(t *testing.T, revoked ...int64) []byte {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, s := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: big.NewInt(s), RevocationTime: time.Unix(1700000000, 0), ReasonCode: 1})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: time.Now().Add(-time.Minute),
		NextUpdate: time.Now().Add(time.Hour), RevokedCertificateEntries: entries}, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// crlServer serves body at /crl, counting the requests; gate, when set,
// holds every answer until it is closed.
type crlServer struct {
	*httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	body []byte
	gate chan struct{}
}

func newCRLServer(t *testing.T, body []byte) *crlServer {
	s := &crlServer{body: body}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if s.gate != nil {
			<-s.gate
		}
		switch r.URL.Path {
		case "/crl":
			s.mu.Lock()
			b := s.body
			s.mu.Unlock()
			w.Write(b)
		case "/redirect":
			http.Redirect(w, r, "/crl", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func TestCheck(t *testing.T) {
	ctx := context.Background()
	ca := newCA(t, "Test CA")
	srv := newCRLServer(t, ca.crl(t, 7))
	c := &revocation.Checker{}

	st, err := c.Check(ctx, ca.leaf(t, 7, srv.URL+"/crl"), ca.Cert)
	if err != nil || !st.Revoked || !st.Checked || st.Reason != 1 || !st.RevokedAt.Equal(time.Unix(1700000000, 0)) || st.CRL != srv.URL+"/crl" || st.Serial != "7" {
		t.Errorf("revoked: %+v, %v", st, err)
	}
	if st, err := c.Check(ctx, ca.leaf(t, 8, srv.URL+"/crl"), ca.Cert); err != nil || st.Revoked || !st.Checked {
		t.Errorf("not revoked: %+v, %v", st, err)
	}
	if st, err := c.Check(ctx, ca.leaf(t, 9), ca.Cert); err != nil || st.Checked || st.Revoked {
		t.Errorf("no CRL named: %+v, %v", st, err)
	}
	if n := srv.hits.Load(); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
	if revocation.ReasonText(0) != "unspecified" || revocation.ReasonText(st.Reason) != "keyCompromise" {
		t.Errorf("ReasonText")
	}
}

// A thousand concurrent probes of certificates on one CRL cost one fetch;
// the next comes once CacheFor has passed.
func TestCacheOneFetch(t *testing.T) {
	ca := newCA(t, "Test CA")
	srv := newCRLServer(t, ca.crl(t, 1))
	srv.gate = make(chan struct{})
	var mu sync.Mutex
	now := time.Now()
	c := &revocation.Checker{Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }}
	leaves := []*x509.Certificate{ca.leaf(t, 1, srv.URL+"/crl"), ca.leaf(t, 2, srv.URL+"/crl")}
	var wg sync.WaitGroup
	var revoked atomic.Int64
	for i := range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := c.Check(context.Background(), leaves[i%2], ca.Cert)
			if err != nil {
				t.Error(err)
			}
			if st.Revoked {
				revoked.Add(1)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond) // let the checks pile up on the fetch
	close(srv.gate)
	wg.Wait()
	if n := srv.hits.Load(); n != 1 || c.Fetches() != 1 {
		t.Errorf("%d fetches (Fetches %d) for 1000 checks, want 1", n, c.Fetches())
	}
	if revoked.Load() != 500 {
		t.Errorf("%d revoked, want 500", revoked.Load())
	}
	mu.Lock()
	now = now.Add(revocation.DefaultCacheFor - time.Second)
	mu.Unlock()
	c.Check(context.Background(), leaves[0], ca.Cert)
	if n := srv.hits.Load(); n != 1 {
		t.Errorf("%d fetches within the hour, want 1", n)
	}
	mu.Lock()
	now = now.Add(2 * time.Second)
	mu.Unlock()
	c.Check(context.Background(), leaves[0], ca.Cert)
	if n := srv.hits.Load(); n != 2 {
		t.Errorf("%d fetches after the hour, want 2", n)
	}
}

func TestCheckRefuses(t *testing.T) {
	ctx := context.Background()
	ca := newCA(t, "Test CA")
	other := newCA(t, "Other CA")
	for _, tt := range []struct {
		name string
		body []byte
		path string
		c    *revocation.Checker
		want error
	}{
		{"signed by another CA", other.crl(t, 7), "/crl", &revocation.Checker{}, revocation.ErrInvalidCRL},
		{"not a CRL", []byte("<html>hello</html>"), "/crl", &revocation.Checker{}, revocation.ErrInvalidCRL},
		{"too large", ca.crl(t, 7), "/crl", &revocation.Checker{MaxSize: 10}, revocation.ErrFetch},
		{"redirect", ca.crl(t, 7), "/redirect", &revocation.Checker{}, revocation.ErrFetch},
		{"missing", ca.crl(t, 7), "/nope", &revocation.Checker{}, revocation.ErrFetch},
		{"past its next update", ca.crl(t), "/crl", &revocation.Checker{Now: func() time.Time { return time.Now().Add(2 * time.Hour) }}, revocation.ErrInvalidCRL},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := newCRLServer(t, tt.body)
			leaf := ca.leaf(t, 7, srv.URL+tt.path)
			st, err := tt.c.Check(ctx, leaf, ca.Cert)
			if !errors.Is(err, tt.want) || st.Revoked || st.Checked {
				t.Errorf("got %+v, %v; want %v and not revoked", st, err, tt.want)
			}
			// The failure is remembered: no second fetch at once.
			tt.c.Check(ctx, leaf, ca.Cert)
			if n := srv.hits.Load(); n != 1 {
				t.Errorf("%d fetches, want 1", n)
			}
		})
	}
	if _, err := (&revocation.Checker{}).Check(ctx, ca.leaf(t, 7, "http://127.0.0.1:1/crl"), nil); !errors.Is(err, revocation.ErrNoIssuer) {
		t.Errorf("no issuer: %v, want ErrNoIssuer", err)
	}
}

// A CRL is used until its NextUpdate at most, even when CacheFor is
// longer: the check after it fetches the list again (here the same,
// now stale, list, which is refused).
func TestCacheEndsAtNextUpdate(t *testing.T) {
	ca := newCA(t, "Test CA")
	srv := newCRLServer(t, ca.crl(t)) // NextUpdate in an hour
	leaf := ca.leaf(t, 7, srv.URL+"/crl")
	var offset atomic.Int64
	c := &revocation.Checker{CacheFor: 24 * time.Hour, Now: func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }}
	if st, err := c.Check(context.Background(), leaf, ca.Cert); err != nil || !st.Checked || st.Revoked {
		t.Fatalf("fresh CRL: %+v, %v; want checked, not revoked", st, err)
	}
	offset.Store(int64(30 * time.Minute))
	if _, err := c.Check(context.Background(), leaf, ca.Cert); err != nil || srv.hits.Load() != 1 {
		t.Fatalf("within the hour: %v after %d fetches, want the cached list", err, srv.hits.Load())
	}
	offset.Store(int64(61 * time.Minute))
	st, err := c.Check(context.Background(), leaf, ca.Cert)
	if !errors.Is(err, revocation.ErrInvalidCRL) || st.Checked || srv.hits.Load() != 2 {
		t.Fatalf("past NextUpdate: %+v, %v after %d fetches; want a second fetch refused as stale", st, err, srv.hits.Load())
	}
}
