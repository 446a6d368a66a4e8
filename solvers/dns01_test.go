package solvers_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libdns/libdns"
	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/solvers"
	"github.com/tlsmint/tlsmint/solvers/dns01test"
)

// spyProvider wraps a provider: it records zones and names, can fail, and
// tracks how many values were at once at one name.
type spyProvider struct {
	solvers.DNSProvider
	dns       *testpebble.DNSServer
	appendErr error
	deleteErr error

	mu        sync.Mutex
	zones     []string
	maxAtOnce int
	deleteCtx []error // ctx.Err() seen by each DeleteRecords
}

func (p *spyProvider) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	if p.appendErr != nil {
		return nil, p.appendErr
	}
	out, err := p.DNSProvider.AppendRecords(ctx, zone, recs)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.zones = append(p.zones, zone)
	for _, r := range recs {
		if n := len(p.dns.TXT(libdns.AbsoluteName(r.RR().Name, zone))); n > p.maxAtOnce {
			p.maxAtOnce = n
		}
	}
	return out, err
}

func (p *spyProvider) DeleteRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	p.mu.Lock()
	p.deleteCtx = append(p.deleteCtx, ctx.Err())
	p.mu.Unlock()
	if p.deleteErr != nil {
		return nil, p.deleteErr
	}
	return p.DNSProvider.DeleteRecords(ctx, zone, recs)
}

// newDNS01 returns a solver over the CA's mock DNS that polls often. Its
// propagation timeout is generous, so that on a busy machine only a record
// that never propagates runs into it; the test of the timeout sets its own.
func newDNS01(ca *testpebble.CA, p solvers.DNSProvider) *solvers.DNS01 {
	_, port, _ := net.SplitHostPort(ca.DNS().Addr())
	n, _ := strconv.Atoi(port)
	return &solvers.DNS01{
		Provider:           p,
		Resolvers:          []string{ca.DNS().Addr()},
		NameserverPort:     n,
		PropagationTimeout: 30 * time.Second,
		PollInterval:       50 * time.Millisecond,
	}
}

// TestDNS01Pebble issues certificates with real dns-01 validation.
func TestDNS01Pebble(t *testing.T) {
	tests := []struct {
		name      string
		ids       []acme.Identifier
		setup     func(*testpebble.DNSServer)
		delay     time.Duration
		wantZones []string
		wantTwo   bool // two values at one name at once
	}{
		{
			name:      "one name",
			ids:       acme.DNSNames("dns.example.com"),
			wantZones: []string{"example.com."},
		},
		{
			name:      "wildcard and apex in one order",
			ids:       acme.DNSNames("example.com", "*.example.com"),
			wantZones: []string{"example.com.", "example.com."},
			wantTwo:   true,
		},
		{
			name: "CNAME-delegated _acme-challenge",
			ids:  acme.DNSNames("www.example.com"),
			setup: func(d *testpebble.DNSServer) {
				d.AddZone("validation.test")
				d.SetCNAME("_acme-challenge.www.example.com", "www.acme.validation.test")
			},
			wantZones: []string{"validation.test."},
		},
		{
			name:      "nested zone",
			ids:       acme.DNSNames("a.sub.example.com"),
			setup:     func(d *testpebble.DNSServer) { d.AddZone("sub.example.com") },
			wantZones: []string{"sub.example.com."},
		},
		{
			name:      "slow propagation",
			ids:       acme.DNSNames("slow.example.com"),
			delay:     400 * time.Millisecond,
			wantZones: []string{"example.com."},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ca := newCA(t, testpebble.Options{})
			d := ca.DNS()
			d.AddZone("example.com")
			if tt.setup != nil {
				tt.setup(d)
			}
			spy := &spyProvider{DNSProvider: &dns01test.Provider{Server: d, Delay: tt.delay}, dns: d}
			s := newDNS01(ca, spy)
			c := newClient(t, ca)
			cert, err := obtain(t, ca, c, acme.ChallengeDNS01, s, tt.ids)
			if err != nil {
				t.Fatalf("Obtain: %v", err)
			}
			if got := cert.Leaf().DNSNames; len(got) != len(tt.ids) {
				t.Errorf("names: got %q, want %d", got, len(tt.ids))
			}
			if strings.Join(spy.zones, " ") != strings.Join(tt.wantZones, " ") {
				t.Errorf("zones appended to: got %q, want %q", spy.zones, tt.wantZones)
			}
			if tt.wantTwo && spy.maxAtOnce < 2 {
				t.Errorf("values at one name at once: got %d, want 2", spy.maxAtOnce)
			}
			for _, id := range tt.ids {
				name := "_acme-challenge." + strings.TrimPrefix(id.Value, "*.")
				if v := d.TXT(name); v != nil {
					t.Errorf("TXT %s left behind: %q", name, v)
				}
			}
			if v := d.TXT("www.acme.validation.test"); v != nil {
				t.Errorf("delegated TXT left behind: %q", v)
			}
		})
	}
}

// TestDNS01PebbleFailures checks the failure paths against the CA's
// counters: a challenge that is not ready is never submitted.
func TestDNS01PebbleFailures(t *testing.T) {
	errAppend := errors.New("provider: zone is read-only")
	errDelete := errors.New("provider: API down")
	tests := []struct {
		name          string
		appendErr     error
		deleteErr     error
		delay         time.Duration
		timeout       time.Duration
		wantErr       error // nil: issuance succeeds
		wantChallenge bool  // the challenge was POSTed
		wantWarning   string
	}{
		{"append fails", errAppend, nil, 0, 0, errAppend, false, ""},
		{"delete fails", nil, errDelete, 0, 0, nil, true, "not deleted"},
		{"never propagates", nil, nil, time.Hour, 300 * time.Millisecond, solvers.ErrNotPropagated, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var orders orderLog
			ca := newCA(t, testpebble.Options{Wrap: orders.wrap})
			d := ca.DNS()
			d.AddZone("example.com")
			spy := &spyProvider{DNSProvider: &dns01test.Provider{Server: d, Delay: tt.delay}, dns: d, appendErr: tt.appendErr, deleteErr: tt.deleteErr}
			s := newDNS01(ca, spy)
			var logs testsetup.Buffer
			s.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			if tt.timeout != 0 {
				s.PropagationTimeout = tt.timeout
			}
			c := newClient(t, ca)
			_, err := obtain(t, ca, c, acme.ChallengeDNS01, s, acme.DNSNames("fail.example.com"))
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Obtain: got %v, want success", err)
				}
			} else if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Obtain: got %v, want an error wrapping %v", err, tt.wantErr)
			}
			if got := ca.Requests("challenge") > 0; got != tt.wantChallenge {
				t.Errorf("challenge POSTed: got %v, want %v (counts %v)", got, tt.wantChallenge, ca.RequestCounts())
			}
			if tt.wantErr != nil {
				statuses := authzStatuses(t, c, orders.order())
				if len(statuses) == 0 {
					t.Fatal("no order recorded")
				}
				for i, st := range statuses {
					if st != acme.StatusDeactivated {
						t.Errorf("authorization %d: got %s, want deactivated", i, st)
					}
				}
			}
			if tt.wantWarning != "" && !strings.Contains(logs.String(), tt.wantWarning) {
				t.Errorf("logs: got %q, want a warning %q", logs.String(), tt.wantWarning)
			}
			if tt.deleteErr == nil {
				if v := d.TXT("_acme-challenge.fail.example.com"); v != nil {
					t.Errorf("TXT left behind: %q", v)
				}
			}
		})
	}
}

// TestDNS01CleanUp checks that CleanUp deletes exactly its own record, even
// with a cancelled context.
func TestDNS01CleanUp(t *testing.T) {
	dnsSrv := testsetup.DNS(t, "example.com")
	spy := &spyProvider{DNSProvider: &dns01test.Provider{Server: dnsSrv}, dns: dnsSrv}
	s := &solvers.DNS01{Provider: spy, Resolvers: []string{dnsSrv.Addr()}}

	apex := acme.Challenge{Type: acme.ChallengeDNS01, URL: "https://ca.test/chal/a", Token: testToken,
		Identifier: dnsID("example.com"), KeyAuthorization: testKeyAut}
	wild := apex
	wild.URL, wild.Token, wild.Wildcard = "https://ca.test/chal/w", "AAAAAAAAAAAAAAAAAAAAAAAA", true
	wild.KeyAuthorization = wild.Token + "." + testThumb

	ctx, cancel := context.WithCancel(t.Context())
	for _, ch := range []acme.Challenge{apex, wild} {
		if err := s.Present(ctx, ch); err != nil {
			t.Fatalf("Present: %v", err)
		}
	}
	name := "_acme-challenge.example.com"
	if got := dnsSrv.TXT(name); len(got) != 2 {
		t.Fatalf("TXT values: got %q, want two", got)
	}
	cancel()
	if err := s.CleanUp(ctx, wild); err != nil {
		t.Fatalf("CleanUp: %v", err)
	}
	if got := dnsSrv.TXT(name); len(got) != 1 || got[0] != apex.DNS01TXTValue() {
		t.Errorf("after cleaning up the wildcard: got %q, want only %q", got, apex.DNS01TXTValue())
	}
	if err := s.CleanUp(ctx, apex); err != nil {
		t.Fatalf("CleanUp: %v", err)
	}
	if got := dnsSrv.TXT(name); got != nil {
		t.Errorf("after both: got %q, want none", got)
	}
	for i, e := range spy.deleteCtx {
		if e != nil {
			t.Errorf("DeleteRecords %d ran with a done context: %v", i, e)
		}
	}
	// A second CleanUp, or one for a challenge never presented, is a no-op.
	if err := s.CleanUp(t.Context(), apex); err != nil {
		t.Errorf("second CleanUp: %v", err)
	}
	if n := len(spy.deleteCtx); n != 2 {
		t.Errorf("DeleteRecords calls: got %d, want 2", n)
	}
}

func TestDNS01PresentRefuses(t *testing.T) {
	good := acme.Challenge{Type: acme.ChallengeDNS01, URL: "u", Token: testToken, Identifier: dnsID("example.com"), KeyAuthorization: testKeyAut}
	tests := []struct {
		name   string
		modify func(*acme.Challenge, *solvers.DNS01)
		want   error
	}{
		{"bad token", func(c *acme.Challenge, _ *solvers.DNS01) { c.Token = "../x"; c.KeyAuthorization = "../x." + testThumb }, solvers.ErrInvalidToken},
		{"IP identifier", func(c *acme.Challenge, _ *solvers.DNS01) { c.Identifier = ipID("192.0.2.1") }, solvers.ErrInvalidIdentifier},
		{"bad name", func(c *acme.Challenge, _ *solvers.DNS01) { c.Identifier.Value = "a..b" }, solvers.ErrInvalidIdentifier},
		{"no provider", func(_ *acme.Challenge, s *solvers.DNS01) { s.Provider = nil }, nil},
		{"no zone", func(c *acme.Challenge, _ *solvers.DNS01) { c.Identifier.Value = "example.net" }, nil},
	}
	dnsSrv := testsetup.DNS(t, "example.com")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spy := &spyProvider{DNSProvider: &dns01test.Provider{Server: dnsSrv}, dns: dnsSrv}
			s := &solvers.DNS01{Provider: spy, Resolvers: []string{dnsSrv.Addr()}}
			chal := good
			tt.modify(&chal, s)
			err := s.Present(t.Context(), chal)
			if err == nil {
				t.Fatal("Present: got nil, want an error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Present: got %v, want an error wrapping %v", err, tt.want)
			}
			if len(spy.zones) != 0 {
				t.Errorf("records appended in %q, want none", spy.zones)
			}
		})
	}
}

// blankProvider returns the records it appended without their values, as a
// careless provider might.
type blankProvider struct{ solvers.DNSProvider }

func (p blankProvider) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	out, err := p.DNSProvider.AppendRecords(ctx, zone, recs)
	for i, r := range out {
		rr := r.RR()
		out[i] = libdns.RR{Name: rr.Name, TTL: rr.TTL}
	}
	return out, err
}

// TestDNS01CleanUpBlankRecords checks that CleanUp deletes only its own
// value when the provider returned records without values, which
// DeleteRecords would take for "every TXT record at the name".
func TestDNS01CleanUpBlankRecords(t *testing.T) {
	dnsSrv := testsetup.DNS(t, "example.com")
	s := &solvers.DNS01{Provider: blankProvider{&dns01test.Provider{Server: dnsSrv}}, Resolvers: []string{dnsSrv.Addr()}}
	apex := acme.Challenge{Type: acme.ChallengeDNS01, URL: "https://ca.test/chal/a", Token: testToken,
		Identifier: dnsID("example.com"), KeyAuthorization: testKeyAut}
	wild := apex
	wild.URL, wild.Token, wild.Wildcard = "https://ca.test/chal/w", "AAAAAAAAAAAAAAAAAAAAAAAA", true
	wild.KeyAuthorization = wild.Token + "." + testThumb
	for _, ch := range []acme.Challenge{apex, wild} {
		if err := s.Present(t.Context(), ch); err != nil {
			t.Fatalf("Present: %v", err)
		}
	}
	name := "_acme-challenge.example.com"
	dnsSrv.AddTXT(name, "another client's value") // RFC 8555 allows several
	if err := s.CleanUp(t.Context(), wild); err != nil {
		t.Fatalf("CleanUp: %v", err)
	}
	got := dnsSrv.TXT(name)
	if len(got) != 2 || !slices.Contains(got, apex.DNS01TXTValue()) || !slices.Contains(got, "another client's value") {
		t.Fatalf("after cleaning up the wildcard: got %q, want the apex's value and the other client's", got)
	}
	if err := s.CleanUp(t.Context(), apex); err != nil {
		t.Fatalf("CleanUp: %v", err)
	}
	if got := dnsSrv.TXT(name); len(got) != 1 || got[0] != "another client's value" {
		t.Errorf("after both: got %q, want only the other client's value", got)
	}
}

// TestDNS01WaitManyValues checks that Wait finds the record among more TXT
// values at its name than the solver keeps when it lists them (stale
// records of failed clean-ups pile up).
func TestDNS01WaitManyValues(t *testing.T) {
	dnsSrv := testsetup.DNS(t, "example.com")
	name := "_acme-challenge.example.com"
	for i := range 100 {
		dnsSrv.AddTXT(name, "stale-value-"+strconv.Itoa(i))
	}
	_, port, _ := net.SplitHostPort(dnsSrv.Addr())
	n, _ := strconv.Atoi(port)
	s := &solvers.DNS01{Provider: &dns01test.Provider{Server: dnsSrv}, Resolvers: []string{dnsSrv.Addr()},
		NameserverPort: n, PropagationTimeout: 30 * time.Second, PollInterval: 50 * time.Millisecond}
	ch := acme.Challenge{Type: acme.ChallengeDNS01, URL: "https://ca.test/chal/a", Token: testToken,
		Identifier: dnsID("example.com"), KeyAuthorization: testKeyAut}
	if err := s.Present(t.Context(), ch); err != nil {
		t.Fatalf("Present: %v", err)
	}
	defer s.CleanUp(t.Context(), ch)
	if got := dnsSrv.TXT(name); len(got) != 101 || got[100] != ch.DNS01TXTValue() {
		t.Fatalf("TXT values: got %d, want 101 with the record last", len(got))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	if err := s.Wait(ctx, ch); err != nil {
		t.Fatalf("Wait: %v", err)
	}
}
