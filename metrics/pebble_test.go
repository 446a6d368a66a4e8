package metrics

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// Certificates obtained from the in-process CA, scraped through promhttp:
// expiry and renewal plans equal the Manager's, one newOrder per
// certificate, and a rate-limited order shows up as a failure.
func TestPebbleScrape(t *testing.T) {
	e := newEnv(t, testpebble.Options{})
	m, c := e.manager(t, Options{RefreshInterval: -1})
	ctx := ctxT(t)
	names := []string{"a.example.com", "b.example.com"}
	if err := m.Manage(ctx, names...); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	dir := e.ca.DirectoryURL()

	// Before any read of Manager.Certificates, from the events alone.
	got := scrape(t, c)
	if v := got.value(t, "tlsmint_issuance_total", "issuer="+dir, "result=success"); v != 2 {
		t.Errorf("issuance_total{result=success}: got %v, want 2", v)
	}
	if v := got.value(t, "tlsmint_issuance_duration_seconds", "issuer="+dir, "result=success"); v != 2 {
		t.Errorf("issuance_duration_seconds count: got %v, want 2", v)
	}
	if v := got.value(t, "tlsmint_certificates", "state=valid"); v != 2 {
		t.Errorf("certificates{state=valid} from events: got %v, want 2", v)
	}

	if err := c.Refresh(ctx); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	infos, err := m.Certificates(ctx)
	if err != nil {
		t.Fatalf("Certificates: %v", err)
	}
	if len(infos) != len(names) {
		t.Fatalf("Certificates: got %d, want %d", len(infos), len(names))
	}
	got = scrape(t, c)
	for _, info := range infos {
		if v := got.value(t, "tlsmint_certificate_not_after_timestamp_seconds", "name="+info.Name, "issuer="+dir); v != float64(info.NotAfter.Unix()) {
			t.Errorf("%s: not_after: got %v, want %d", info.Name, v, info.NotAfter.Unix())
		}
		want := float64(info.RenewAt.UnixNano()) / 1e9
		if v := got.value(t, "tlsmint_certificate_renewal_timestamp_seconds", "name="+info.Name, "issuer="+dir, "reason="+info.RenewReason); v-want > 1e-3 || want-v > 1e-3 {
			t.Errorf("%s: renewal: got %v, want %v (%s)", info.Name, v, want, info.RenewReason)
		}
		if v := got.value(t, "tlsmint_certificate_ready", "name="+info.Name); v != 1 {
			t.Errorf("%s: ready: got %v, want 1", info.Name, v)
		}
	}
	if v := got.value(t, "tlsmint_acme_requests_total", "issuer="+dir, "operation="+acme.OpNewOrder, "status=201", "problem="); v != 2 {
		t.Errorf("acme_requests_total{newOrder,201}: got %v, want 2 (one per certificate)", v)
	}
	if v := got.sum("tlsmint_acme_request_duration_seconds", "operation="+acme.OpFinalize); v != 2 {
		t.Errorf("acme_request_duration_seconds{finalize} count: got %v, want 2", v)
	}
	if v := got.value(t, "tlsmint_certificates_expiring", "within=30d"); v != 0 {
		t.Errorf("certificates_expiring{30d}: got %v, want 0 (Pebble issues for 90 days)", v)
	}
	if _, ok := got.lookup("tlsmint_metrics_refresh_timestamp_seconds"); !ok {
		t.Errorf("refresh_timestamp_seconds: got none after Refresh")
	}
	lint(t, c)

	// A rate-limited newOrder: a failure, not ready, the wait reported.
	if err := e.ca.RateLimit("newOrder", 30*time.Second, 1); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if err := m.Manage(ctx, "c.example.com"); err == nil || !errors.Is(err, acme.ErrRateLimited) {
		t.Fatalf("Manage with newOrder rate-limited: got %v, want an error matching acme.ErrRateLimited", err)
	}
	for _, refresh := range []bool{false, true} {
		t.Run("refresh="+strconv.FormatBool(refresh), func(t *testing.T) {
			if refresh {
				if err := c.Refresh(ctx); err != nil {
					t.Fatalf("Refresh: %v", err)
				}
			}
			got := scrape(t, c)
			if v := got.value(t, "tlsmint_issuance_total", "issuer="+dir, "result=failure"); v != 1 {
				t.Errorf("issuance_total{result=failure}: got %v, want 1", v)
			}
			if v := got.value(t, "tlsmint_certificate_ready", "name=c.example.com"); v != 0 {
				t.Errorf("ready{c.example.com}: got %v, want 0", v)
			}
			if _, ok := got.lookup("tlsmint_certificate_not_after_timestamp_seconds", "name=c.example.com"); ok {
				t.Errorf("not_after{c.example.com}: got a series for a name without a certificate, want none")
			}
			if v := got.value(t, "tlsmint_certificates", "state=missing"); v != 1 {
				t.Errorf("certificates{state=missing}: got %v, want 1", v)
			}
			if v := got.value(t, "tlsmint_certificates_failing"); v != 1 {
				t.Errorf("certificates_failing: got %v, want 1", v)
			}
			if v := got.value(t, "tlsmint_acme_requests_total", "operation="+acme.OpNewOrder, "status=429", "problem=rateLimited"); v != 1 {
				t.Errorf("acme_requests_total{newOrder,429,rateLimited}: got %v, want 1", v)
			}
			if v := got.value(t, "tlsmint_rate_limited_total", "issuer="+dir); v != 1 {
				t.Errorf("rate_limited_total: got %v, want 1", v)
			}
			until := got.value(t, "tlsmint_rate_limited_until_timestamp_seconds", "name=c.example.com", "issuer="+dir)
			if lo, hi := float64(before.Add(29*time.Second).Unix()), float64(time.Now().Add(31*time.Second).Unix()); until < lo || until > hi {
				t.Errorf("rate_limited_until: got %v, want between %v and %v (30 s from the order)", until, lo, hi)
			}
			if v := got.value(t, "tlsmint_certificate_ready", "name=a.example.com"); v != 1 {
				t.Errorf("ready{a.example.com}: got %v, want 1", v)
			}
			lint(t, c)
		})
	}
}

// TestRefusedTotal: every refused handshake is counted by its reason, also
// past the pace of EventRefused (autotls.MaxRefusedEvents a minute).
func TestRefusedTotal(t *testing.T) {
	e := newEnv(t, testpebble.Options{})
	m, c := e.manager(t, Options{RefreshInterval: -1})
	refuse := func(sni string, want error) {
		t.Helper()
		if _, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: sni}); !errors.Is(err, want) {
			t.Fatalf("GetCertificate(%q) = %v, want %v", sni, err, want)
		}
	}
	refuse("", autotls.ErrInvalidName)
	refuse("a_b.example.com", autotls.ErrInvalidName)
	refuse("*.example.com", autotls.ErrInvalidName)
	n := autotls.MaxRefusedEvents + 10
	for i := range n {
		refuse(fmt.Sprintf("n%d.example.net", i), autotls.ErrHostNotAllowed)
	}
	got := scrape(t, c)
	for reason, want := range map[string]float64{
		"no_server_name": 1, "invalid_name": 2, "not_allowed": float64(n), "on_demand_limited": 0,
	} {
		if v := got.value(t, "tlsmint_on_demand_refused_total", "reason="+reason); v != want {
			t.Errorf("on_demand_refused_total{reason=%s}: got %v, want %v", reason, v, want)
		}
	}
	if v := got.sum("tlsmint_acme_requests_total"); v != 0 {
		t.Errorf("acme_requests_total: got %v for refused names, want 0", v)
	}
	lint(t, c)
}
