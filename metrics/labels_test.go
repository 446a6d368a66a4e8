package metrics

import (
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/watchdog"
)

// TestHostileLabelValues: text that is not valid UTF-8 (a directory URL, a
// watchdog target, a tenant, a name read from storage) and text with
// quotes, backslashes, newlines and controls reaches every label; no call
// panics, the scrape is valid exposition text, and two invalid values
// stay two series.
func TestHostileLabelValues(t *testing.T) {
	clk := newClock()
	now := clk.now()
	infos := []record.Certificate{
		{Name: "bad\xff.example", Issuer: "https://ca.test/\xfe", NotAfter: now.Add(time.Hour), RenewAt: now.Add(time.Minute), RenewReason: "\xfd"},
		{Name: "bad\xfe.example", Issuer: "https://ca.test/\xfe", NotAfter: now.Add(2 * time.Hour)},
		{Name: "q\"u\\o\nte\x1b.example", Issuer: "https://ca.test/\"dir", NotAfter: now.Add(3 * time.Hour)},
	}
	c := fake(infos, Options{}, clk)
	defer c.Close()
	c.ObserveExchange(acme.Exchange{Time: now, Directory: "https://ca.test/\xfe", Operation: "new\xffOrder", Status: 201,
		Identifiers: []acme.Identifier{{Type: "dns", Value: "bad\xff.example"}}})
	c.OnEvent(autotls.Event{Type: autotls.EventRateLimited, Name: "bad\xff.example", Issuer: "https://ca.test/\xfe", RetryAt: now.Add(time.Hour)})
	c.OnEvent(autotls.Event{Type: autotls.EventObtained, Name: "bad\xff.example", Issuer: "https://ca.test/\xfe", NotAfter: now.Add(time.Hour)})
	c.OnEvent(autotls.Event{Type: autotls.EventIssuerFailed, Name: "bad\xff.example", Issuer: "\xff"})
	c.ObserveDecision(record.Audit{Kind: "decision", Operation: "relay.issue", Outcome: "ok", Tenant: "t\xff"})
	c.ObserveProbe(watchdog.Result{Target: watchdog.Target{Addr: "\xff:443", ServerName: "\xfe"}, Time: now, Problems: []error{watchdog.ErrInvalidTarget}})

	m := scrape(t, c)
	lint(t, c)
	for _, tc := range []struct {
		name   string
		labels []string
	}{
		{"tlsmint_certificate_not_after_timestamp_seconds", []string{`name=bad\xff.example`, `issuer=https://ca.test/\xfe`}},
		{"tlsmint_certificate_not_after_timestamp_seconds", []string{`name=bad\xfe.example`}},
		{"tlsmint_certificate_not_after_timestamp_seconds", []string{"name=q\"u\\o\nte\x1b.example", "issuer=https://ca.test/\"dir"}},
		{"tlsmint_certificate_renewal_timestamp_seconds", []string{`name=bad\xff.example`, `reason=\xfd`}},
		{"tlsmint_acme_requests_total", []string{`issuer=https://ca.test/\xfe`, `operation=new\xffOrder`}},
		{"tlsmint_rate_limited_until_timestamp_seconds", []string{`name=bad\xff.example`}},
		{"tlsmint_issuance_total", []string{`issuer=\xff`, "result=fallback"}},
		{"tlsmint_relay_certificates_issued_total", []string{"tenant=other"}},
		{"tlsmint_watchdog_target_problem", []string{`target=\xff:443`, `server_name=\xfe`, "problem=invalid_target"}},
	} {
		if _, ok := m.lookup(tc.name, tc.labels...); !ok {
			t.Errorf("%s%q: got no series, want one", tc.name, tc.labels)
		}
	}
}
