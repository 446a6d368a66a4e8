package relay_test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/relay"
	"github.com/tlsmint/tlsmint/statuspage"
)

var _ statuspage.CertificateSource = (*relay.Server)(nil)

// TestCertificatesListed: the certificates issued through the relay, per
// tenant, with their expiry, upstream, ARI window once a client asked,
// revocation, and a renewed certificate replacing the one it renewed; the
// same on a status page over the relay.
func TestCertificatesListed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := ctxT(t)
	if got, err := e.srv.Certificates(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Certificates before any issuance: %+v, %v; want none", got, err)
	}
	team := e.registered(t)
	first, err := e.obtain(t, team, acme.DNSNames("list.example.com", "www.list.example.com"), nil)
	if err != nil {
		t.Fatalf("Obtain: %v", err)
	}
	id, _ := acme.CertificateID(first.Leaf())
	second, err := e.obtain(t, team, acme.DNSNames("www.list.example.com", "list.example.com"), func(r *acme.ObtainRequest) { r.Replaces = id })
	if err != nil {
		t.Fatalf("renewal: %v", err)
	}
	eab := e.tenant(t, "ops", relay.Policy{Names: []string{"ops.example.com"}, ValidationTargets: loopback()})
	ops := e.client(t)
	if _, err := ops.Register(ctx, acme.Account{ExternalAccountBinding: eab}); err != nil {
		t.Fatal(err)
	}
	revoked, err := e.obtain(t, ops, acme.DNSNames("ops.example.com"), nil)
	if err != nil {
		t.Fatalf("Obtain for ops: %v", err)
	}
	if err := ops.RevokeCertificate(ctx, revoked.Leaf().Raw, nil, acme.ReasonSuperseded); err != nil {
		t.Fatal(err)
	}

	byTenant := func() map[string]record.Certificate {
		t.Helper()
		infos, err := e.srv.Certificates(ctx)
		if err != nil {
			t.Fatalf("Certificates: %v", err)
		}
		out := map[string]record.Certificate{}
		for _, in := range infos {
			if _, dup := out[in.Tenant]; dup {
				t.Fatalf("two certificates of tenant %s listed: %+v", in.Tenant, infos)
			}
			out[in.Tenant] = in
		}
		if len(out) != 2 {
			t.Fatalf("got %+v, want one certificate of team and one of ops", infos)
		}
		return out
	}
	got := byTenant()
	c := got["team"]
	leaf := second.Leaf()
	if c.Name != "www.list.example.com" || strings.Join(c.Names, ",") != "www.list.example.com,list.example.com" || // the renewal's order
		c.Serial != hex.EncodeToString(leaf.SerialNumber.Bytes()) || !c.NotAfter.Equal(leaf.NotAfter) || !c.NotBefore.Equal(leaf.NotBefore) ||
		c.Issuer != e.ca.DirectoryURL() || c.Revoked || !c.ARIWindowStart.IsZero() {
		t.Errorf("team's certificate: got %+v, want the renewal's (serial %x, not after %v) from %s, not revoked, no ARI window yet",
			c, leaf.SerialNumber, leaf.NotAfter, e.ca.DirectoryURL())
	}
	if o := got["ops"]; o.Name != "ops.example.com" || !o.Revoked || !o.NotAfter.Equal(revoked.Leaf().NotAfter) {
		t.Errorf("ops's certificate: got %+v, want ops.example.com revoked", o)
	}

	// Once a client asked for renewal information, the upstream's window.
	start, end := time.Now().Add(48*time.Hour).UTC().Truncate(time.Second), time.Now().Add(72*time.Hour).UTC().Truncate(time.Second)
	if err := e.ca.SetRenewalInfo(leaf, start, end, "https://ca.example/why"); err != nil {
		t.Fatal(err)
	}
	if _, err := team.RenewalInfo(ctx, leaf); err != nil {
		t.Fatal(err)
	}
	c = byTenant()["team"]
	if !c.ARIWindowStart.Equal(start) || !c.ARIWindowEnd.Equal(end) || c.ARIExplanationURL != "https://ca.example/why" {
		t.Errorf("ARI window %v–%v (%q), want Pebble's %v–%v", c.ARIWindowStart, c.ARIWindowEnd, c.ARIExplanationURL, start, end)
	}

	// The status page over the relay.
	now := time.Now()
	h := &statuspage.Handler{Sources: []statuspage.CertificateSource{e.srv}, Now: func() time.Time { return now }}
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/status?format=json", nil)
	r.RemoteAddr = "127.0.0.1:1"
	h.ServeHTTP(w, r)
	var st statuspage.Status
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || w.Code != http.StatusOK {
		t.Fatalf("status page: %d %v", w.Code, err)
	}
	if len(st.Errors) != 0 || len(st.Certificates) != 2 || st.Counts[statuspage.StateRevoked] != 1 || st.Counts[statuspage.StateOK] != 1 {
		t.Fatalf("status page: %+v, want team's certificate ok and ops's revoked", st)
	}
	for _, sc := range st.Certificates {
		if sc.Tenant == "team" && (!sc.NotAfter.Equal(leaf.NotAfter) || sc.DaysLeft != int(leaf.NotAfter.Sub(now)/(24*time.Hour)) || !sc.ARIWindowEnd.Equal(end)) {
			t.Errorf("status page, team: %+v, want expiry %v and the ARI window", sc, leaf.NotAfter)
		}
	}
	w = httptest.NewRecorder()
	r = httptest.NewRequest(http.MethodGet, "/status", nil)
	r.RemoteAddr = "127.0.0.1:1"
	h.ServeHTTP(w, r)
	for _, want := range []string{`data-name="www.list.example.com" data-state="ok"`, "tenant team", `data-name="ops.example.com" data-state="revoked"`, "tenant ops"} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("the HTML page lacks %q", want)
		}
	}
}

// TestCertificatesFromIndex: Certificates reads the index of current
// certificates, not the certificates: no certificate is loaded however
// many were issued; a storage written before the index existed gets it
// built on the first call, with the same answer.
func TestCertificatesFromIndex(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.registered(t)
	for range 3 { // three certificates for one name set: one current
		if _, err := e.obtain(t, c, acme.DNSNames("index.example.com"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.obtain(t, c, acme.DNSNames("other.example.com"), nil); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	certLoads := 0
	fs := &faultStore{Storage: e.store}
	fs.set(func(op, key string) bool {
		if op == "Load" && strings.HasPrefix(key, "relay/certs/") {
			mu.Lock()
			certLoads++
			mu.Unlock()
		}
		return false
	})
	view := &relay.Server{Storage: fs, Upstreams: e.srv.Upstreams}
	t.Cleanup(func() { view.Close() })
	if _, err := view.Certificates(ctxT(t)); err != nil { // the first call on this storage builds the index
		t.Fatal(err)
	}
	mu.Lock()
	certLoads = 0
	mu.Unlock()
	want, err := view.Certificates(ctxT(t))
	if err != nil || len(want) != 2 || certLoads != 0 {
		t.Fatalf("Certificates: %d rows, %v, %d certificate loads; want 2 rows and no certificate loaded", len(want), err, certLoads)
	}
	// The index removed, as on a storage of an older relay: built again.
	keys, _ := e.store.List(ctxT(t), "relay/current")
	for _, k := range keys {
		e.store.Delete(ctxT(t), k)
	}
	again := &relay.Server{Storage: e.store, Upstreams: e.srv.Upstreams}
	t.Cleanup(func() { again.Close() })
	got, err := again.Certificates(ctxT(t))
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after rebuilding the index: %+v, %v; want %+v", got, err, want)
	}
	if _, err := e.store.Stat(ctxT(t), "relay/current-built"); err != nil {
		t.Fatalf("no marker after the rebuild: %v", err)
	}
}
