package relay_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/relay"
	"github.com/tlsmint/tlsmint/storage"
)

// yearOrders is how many orders the simulated year has (-short: fewer).
func yearOrders() int {
	if testing.Short() {
		return 5000
	}
	return 100_000
}

// A year is a relay on a test clock taking orders through its ACME API
// (newOrder, signed, with its nonces, limits and storage writes), every
// other one issued — recorded through the relay's own recording of an
// upstream issuance, with a certificate of a local CA valid 90 days —
// the others abandoned, over one simulated year, with an hourly sweep or
// none.
type year struct {
	srv    *relay.Server
	store  storage.Storage
	clock  *testClock
	acct   string
	key    *ecdsa.PrivateKey
	nonce  string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	up     *relay.Upstream
	serial int64
	csr    []byte
	csrKey *ecdsa.PrivateKey
}

func newYear(b *testing.B, sweep bool) *year {
	b.Helper()
	y := &year{store: storage.NewMemory(), clock: &testClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, key: newKey(b), caKey: newKey(b), csrKey: newKey(b)}
	y.up = &relay.Upstream{Name: "ca", Client: &acme.Client{DirectoryURL: "https://ca.invalid/directory"}}
	y.srv = &relay.Server{Storage: y.store, BaseURL: "https://relay.example", Upstreams: []*relay.Upstream{y.up}, Retention: relay.Retention{SweepInterval: -1}}
	if !sweep {
		y.srv.Retention = relay.Retention{SweepInterval: -1, Orders: -1, Certificates: -1}
	}
	relay.SetClock(y.srv, y.clock.now)
	b.Cleanup(func() { y.srv.Close() })
	ctx := context.Background()
	pol := relay.Policy{Names: []string{"example.com"}}
	if err := y.srv.PutTenant(ctx, relay.Tenant{ID: "team", Policy: pol}); err != nil {
		b.Fatal(err)
	}
	eab, err := y.srv.NewEABKey(ctx, "team")
	if err != nil {
		b.Fatal(err)
	}
	y.ca = testsetup.Sign(b, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "year CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: y.clock.now().Add(-time.Hour), NotAfter: y.clock.now().Add(3 * 365 * 24 * time.Hour), SubjectKeyId: []byte{1, 2, 3, 4}, KeyUsage: x509.KeyUsageCertSign},
		y.caKey.Public(), nil, y.caKey)
	// Register through the API, with the EAB key.
	c := &acme.Client{DirectoryURL: "https://relay.example/directory", Key: y.key, HTTPClient: &http.Client{Transport: handlerTransport{y.srv}}}
	acct, err := c.Register(ctx, acme.Account{ExternalAccountBinding: eab})
	if err != nil {
		b.Fatal(err)
	}
	y.acct = acct.URL
	return y
}

// handlerTransport serves requests with a handler, in process.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	w := httptest.NewRecorder()
	r.RemoteAddr = "192.0.2.1:1234"
	t.h.ServeHTTP(w, r)
	return w.Result(), nil
}

// order places one order through the API and returns its ID.
func (y *year) order(b *testing.B, name string) string {
	if y.nonce == "" {
		w := httptest.NewRecorder()
		y.srv.ServeHTTP(w, httptest.NewRequest(http.MethodHead, "https://relay.example/new-nonce", nil))
		y.nonce = w.Header().Get("Replay-Nonce")
	}
	u := "https://relay.example/new-order"
	body := rawJWS(b, y.key, map[string]any{"alg": "ES256", "kid": y.acct, "nonce": y.nonce, "url": u}, []byte(`{"identifiers":[{"type":"dns","value":"`+name+`"}]}`))
	r := httptest.NewRequest(http.MethodPost, u, strings.NewReader(string(body)))
	r.Header.Set("Content-Type", "application/jose+json")
	r.RemoteAddr = "192.0.2.1:1234"
	w := httptest.NewRecorder()
	y.srv.ServeHTTP(w, r)
	y.nonce = w.Header().Get("Replay-Nonce")
	if w.Code != http.StatusCreated {
		b.Fatalf("newOrder: %d %s", w.Code, w.Body)
	}
	loc := w.Header().Get("Location")
	return loc[strings.LastIndexByte(loc, '/')+1:]
}

// issue records a certificate for name, valid 90 days from now, as the
// upstream's answer to the order.
func (y *year) issue(b *testing.B, id, name string) {
	y.serial++
	now := y.clock.now()
	leaf := testsetup.Sign(b, &x509.Certificate{SerialNumber: big.NewInt(y.serial), DNSNames: []string{name}, NotBefore: now, NotAfter: now.Add(90 * 24 * time.Hour)},
		y.csrKey.Public(), y.ca, y.caKey)
	ch := &acme.Chain{Certificates: []*x509.Certificate{leaf, y.ca}}
	if y.csr == nil {
		y.csr, _ = acme.CSR(y.csrKey, acme.DNSNames(name))
	}
	if err := relay.RecordIssuance(context.Background(), y.srv, id, y.csr, &acme.Certificate{Chain: ch, Chains: []*acme.Chain{ch}}, y.up); err != nil {
		b.Fatal(err)
	}
}

// run places n orders over a year (the name sets: names of them), every
// other one issued (each one with issueAll), sweeping once a simulated
// day when sweep (the retention is counted in days; the memory storage's
// List reads every key, so hourly passes would time its List, not the
// relay).
func (y *year) run(b *testing.B, n, names int, sweep bool, issueAll bool) {
	step := 365 * 24 * time.Hour / time.Duration(n)
	nextSweep := y.clock.now().Add(24 * time.Hour)
	for i := range n {
		y.clock.advance(step)
		name := fmt.Sprintf("h%d.example.com", i%names)
		id := y.order(b, name)
		if issueAll || i%2 == 0 {
			y.issue(b, id, name)
		}
		if sweep && !y.clock.now().Before(nextSweep) {
			if _, err := y.srv.Sweep(context.Background()); err != nil {
				b.Fatal(err)
			}
			nextSweep = nextSweep.Add(24 * time.Hour)
		}
	}
}

// held returns the keys and bytes stored under relay/.
func (y *year) held(b *testing.B) (keys, bytes int) {
	ks, err := y.store.List(context.Background(), "relay/")
	if err != nil {
		b.Fatal(err)
	}
	for _, k := range ks {
		v, err := y.store.Load(context.Background(), k)
		if err == nil {
			bytes += len(v)
		}
	}
	return len(ks), bytes
}

// BenchmarkRetentionYear: the storage a relay holds after a year of
// orders (yearOrders, half issued, over 2,000 names), with a daily sweep
// at the default retention and with everything kept (the relay before
// the sweeper). Reported: keys and MB held at the end; ns/op is the
// whole year's orders, recordings and sweeps.
//
//	go test -run '^$' -bench BenchmarkRetentionYear -benchtime 1x ./relay
func BenchmarkRetentionYear(b *testing.B) {
	for _, sweep := range []bool{false, true} {
		name := "no-sweeper"
		if sweep {
			name = "sweeper"
		}
		b.Run(name, func(b *testing.B) {
			var keys, bytes int
			for b.Loop() {
				y := newYear(b, sweep)
				y.run(b, yearOrders(), 2000, sweep, false)
				keys, bytes = y.held(b)
			}
			b.ReportMetric(float64(keys), "keys")
			b.ReportMetric(float64(bytes)/1e6, "MB")
		})
	}
}

// BenchmarkCertificatesIssued: Server.Certificates (what the status page
// and the metrics read) at yearOrders issued certificates (for 10,000
// name sets: 10 each), from the index of current certificates, and — as
// the relay read them before the index — by loading and parsing every
// certificate stored.
//
//	go test -run '^$' -bench BenchmarkCertificatesIssued -benchtime 5x ./relay
func BenchmarkCertificatesIssued(b *testing.B) {
	y := newYear(b, false)
	sets := max(yearOrders()/10, 1)
	y.run(b, yearOrders(), sets, false, true)
	ctx := context.Background()
	if _, err := y.srv.Certificates(ctx); err != nil { // the first call on a storage builds the index
		b.Fatal(err)
	}
	b.Run("index", func(b *testing.B) {
		for b.Loop() {
			infos, err := y.srv.Certificates(ctx)
			if err != nil || len(infos) != sets {
				b.Fatalf("Certificates: %d, %v; want %d", len(infos), err, sets)
			}
		}
	})
	b.Run("scan-every-certificate", func(b *testing.B) {
		for b.Loop() {
			keys, err := y.store.List(ctx, "relay/certs/")
			if err != nil || len(keys) != yearOrders() {
				b.Fatalf("%d certificates, %v", len(keys), err)
			}
			newest := map[string]string{}
			for _, k := range keys {
				v, err := y.store.Load(ctx, k)
				if err != nil {
					b.Fatal(err)
				}
				var r struct {
					Tenant      string            `json:"tenant"`
					Identifiers []acme.Identifier `json:"identifiers"`
					Chains      [][]byte          `json:"chains"`
				}
				if err := json.Unmarshal(v, &r); err != nil {
					b.Fatal(err)
				}
				leaf := firstCert(b, r.Chains[0])
				newest[r.Tenant+r.Identifiers[0].Value] = hex.EncodeToString(leaf.SerialNumber.Bytes())
			}
			if len(newest) != sets {
				b.Fatalf("%d sets", len(newest))
			}
		}
	})
}
