package metrics

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/record"
)

func TestDecisions(t *testing.T) {
	c := New(nil, Options{})
	defer c.Close()
	for _, r := range []record.Audit{
		{Kind: "decision", Operation: "relay.newOrder", Outcome: "ok"},
		{Kind: "decision", Operation: "relay.newOrder", Outcome: "ok"},
		{Kind: "decision", Operation: "relay.newOrder", Outcome: "refused", Problem: "urn:ietf:params:acme:error:rejectedIdentifier"},
		{Kind: "decision", Operation: "relay.issue", Outcome: "failure", Problem: "urn:example:made-up"},
		{Kind: "exchange", Operation: "newOrder", Outcome: "ok"}, // not a decision: ignored
		{Kind: "decision", Operation: "bad op\n{}", Outcome: "made-up"},
		{Operation: "relay.revoke", Outcome: "ok"}, // no kind: a decision
		{Kind: "decision", Operation: "relay.issue", Outcome: "ok", Tenant: "web"},
		{Kind: "decision", Operation: "relay.issue", Outcome: "ok", Tenant: "web"},
		{Kind: "decision", Operation: "relay.issue", Outcome: "ok", Tenant: "ops"},
	} {
		c.ObserveDecision(r)
	}
	m := scrape(t, c)
	for _, w := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"operation=relay.newOrder", "outcome=ok", "problem="}, 2},
		{[]string{"operation=relay.newOrder", "outcome=refused", "problem=rejectedIdentifier"}, 1},
		{[]string{"operation=relay.issue", "outcome=failure", "problem=other"}, 1},
		{[]string{"operation=other", "outcome=other", "problem="}, 1},
		{[]string{"operation=relay.revoke", "outcome=ok", "problem="}, 1},
	} {
		if got := m.value(t, "tlsmint_decisions_total", w.labels...); got != w.want {
			t.Errorf("tlsmint_decisions_total%v = %v, want %v", w.labels, got, w.want)
		}
	}
	if got := m.value(t, "tlsmint_relay_certificates_issued_total", "tenant=web"); got != 2 {
		t.Errorf("issued for web = %v, want 2", got)
	}
	if got := m.sum("tlsmint_relay_certificates_issued_total"); got != 3 {
		t.Errorf("%v issued certificates counted, want 3 (web twice, ops once; not the failure)", got)
	}
	if got := m.sum("tlsmint_decisions_total"); got != 9 {
		t.Errorf("%v decisions counted, want 9 (the exchange is not one)", got)
	}
	lint(t, c)
}

// Operation names are bounded: past maxOperations, new ones are "other".
func TestDecisionOperationsBounded(t *testing.T) {
	c := New(nil, Options{})
	defer c.Close()
	for i := range maxOperations + 20 {
		c.ObserveDecision(record.Audit{Kind: "decision", Operation: "op" + strconv.Itoa(i), Outcome: "ok"})
	}
	c.ObserveDecision(record.Audit{Kind: "decision", Operation: "op0", Outcome: "ok"})
	m := scrape(t, c)
	if got := len(m.series("tlsmint_decisions_total", nil)); got != maxOperations+1 {
		t.Errorf("%d series, want %d (the cap plus other)", got, maxOperations+1)
	}
	if got := m.value(t, "tlsmint_decisions_total", "operation=other"); got != 20 {
		t.Errorf("other = %v, want 20", got)
	}
	if got := m.value(t, "tlsmint_decisions_total", "operation=op0"); got != 2 {
		t.Errorf("op0 = %v, want 2 (a known name stays apart past the cap)", got)
	}
}

func TestHandler(t *testing.T) {
	c := New(nil, Options{})
	defer c.Close()
	c.ObserveDecision(record.Audit{Kind: "decision", Operation: "relay.finalize", Outcome: "ok"})
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	for _, want := range []string{`tlsmint_decisions_total{operation="relay.finalize",outcome="ok",problem=""} 1`, "go_goroutines ", "process_start_time_seconds ",
		`tlsmint_build_info{goversion="` + runtime.Version() + `",version="`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("scrape lacks %q:\n%.2000s", want, b)
		}
	}
}

// Tenant labels are bounded: past maxTenants, new ones are "other".
func TestIssuedTenantsBounded(t *testing.T) {
	c := New(nil, Options{})
	defer c.Close()
	for i := range maxTenants + 5 {
		c.ObserveDecision(record.Audit{Kind: "decision", Operation: "relay.issue", Outcome: "ok", Tenant: "t" + strconv.Itoa(i)})
	}
	m := scrape(t, c)
	if got := len(m.series("tlsmint_relay_certificates_issued_total", nil)); got != maxTenants+1 {
		t.Errorf("%d series, want %d (the cap plus other)", got, maxTenants+1)
	}
	if got := m.value(t, "tlsmint_relay_certificates_issued_total", "tenant=other"); got != 5 {
		t.Errorf("other = %v, want 5", got)
	}
}

// The relay's refusals without a valid account are counted by problem
// and source network; admin refusals and those of an account are not;
// networks are bounded.
func TestUnauthenticatedRefusals(t *testing.T) {
	c := New(nil, Options{})
	defer c.Close()
	bad := "urn:ietf:params:acme:error:malformed"
	for _, r := range []record.Audit{
		{Kind: "decision", Operation: "relay.newOrder", Outcome: "refused", Problem: bad, Source: "203.0.113.7"},
		{Kind: "decision", Operation: "relay.newOrder", Outcome: "refused", Problem: bad, Source: "203.0.113.200"},
		{Kind: "decision", Operation: "relay.newAccount", Outcome: "refused", Problem: "urn:ietf:params:acme:error:unauthorized", Source: "2001:db8:1:2::5"},
		{Kind: "decision", Operation: "relay.newOrder", Outcome: "refused", Problem: bad, Source: "198.51.100.1", Account: "https://relay/acct/x"},
		{Kind: "decision", Operation: "relay.admin.putTenant", Outcome: "refused", Source: "198.51.100.1"},
		{Kind: "decision", Operation: "relay.newOrder", Outcome: "ok", Source: "198.51.100.1"},
	} {
		c.ObserveDecision(r)
	}
	m := scrape(t, c)
	if got := m.value(t, "tlsmint_relay_unauthenticated_refusals_total", "problem=malformed", "network=203.0.113.0/24"); got != 2 {
		t.Errorf("malformed from 203.0.113.0/24 = %v, want 2", got)
	}
	if got := m.value(t, "tlsmint_relay_unauthenticated_refusals_total", "problem=unauthorized", "network=2001:db8:1::/48"); got != 1 {
		t.Errorf("unauthorized from 2001:db8:1::/48 = %v, want 1", got)
	}
	if got := m.sum("tlsmint_relay_unauthenticated_refusals_total"); got != 3 {
		t.Errorf("%v counted, want 3", got)
	}
	for i := range maxNetworks + 3 {
		c.ObserveDecision(record.Audit{Kind: "decision", Operation: "relay.newOrder", Outcome: "refused", Problem: bad, Source: "10." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256) + ".1"})
	}
	m = scrape(t, c)
	if got := len(m.series("tlsmint_relay_unauthenticated_refusals_total", nil)); got > maxNetworks+2 {
		t.Errorf("%d series, want at most the cap plus other", got)
	}
	lint(t, c)
}

// Options.Certificates is read instead of a Manager: a server's own
// certificate files get their per-name series.
func TestCertificatesOption(t *testing.T) {
	notAfter := time.Now().Add(30 * 24 * time.Hour).Truncate(time.Second)
	c := New(nil, Options{Certificates: func(context.Context) ([]record.Certificate, error) {
		return []record.Certificate{{Name: "relay.example", Names: []string{"relay.example"}, Issuer: "files", NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter, Stored: true, InMemory: true}}, nil
	}})
	defer c.Close()
	m := scrape(t, c)
	if got := m.value(t, "tlsmint_certificate_not_after_timestamp_seconds", "name=relay.example", "issuer=files"); got != float64(notAfter.Unix()) {
		t.Fatalf("not_after = %v, want %d", got, notAfter.Unix())
	}
	lint(t, c)
}
