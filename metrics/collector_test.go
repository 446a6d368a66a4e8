package metrics

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/record"
)

const testIssuer = "https://ca.test/dir"

// simulated returns n certificate infos, sorted by name, expiring one
// minute apart in a shuffled order from now+1h on.
func simulated(n int, now time.Time) []record.Certificate {
	infos := make([]record.Certificate, n)
	for i := range infos {
		// i*7919 mod n spreads the expiries over the names (7919 is
		// prime, so for n not a multiple of it this is a permutation).
		k := (i * 7919) % n
		notAfter := now.Add(time.Hour + time.Duration(k)*time.Minute)
		infos[i] = record.Certificate{
			Name:        fmt.Sprintf("n%07d.example.com", i),
			Issuer:      testIssuer,
			Serial:      fmt.Sprintf("%x", i+1),
			NotBefore:   notAfter.Add(-90 * 24 * time.Hour),
			NotAfter:    notAfter,
			RenewAt:     notAfter.Add(-30 * 24 * time.Hour),
			RenewReason: autotls.ReasonSchedule,
			Stored:      true,
			InMemory:    true,
		}
	}
	return infos
}

// The per-name series are capped at MaxNames, soonest-expiring first;
// the aggregates count every name.
func TestMaxNames(t *testing.T) {
	const n = 5000
	tests := []struct {
		name     string
		maxNames int
		want     int
	}{
		{"default", 0, DefaultMaxNames},
		{"100", 100, 100},
		{"more than the names", 2 * n, n},
		{"none", -1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			infos := simulated(n, clk.now())
			c := fake(infos, Options{MaxNames: tt.maxNames}, clk)
			defer c.Close()
			got := scrape(t, c)
			names := got.names("tlsmint_certificate_ready")
			if len(names) != tt.want {
				t.Fatalf("ready series: got %d, want %d", len(names), tt.want)
			}
			for _, fam := range []string{"tlsmint_certificate_not_after_timestamp_seconds", "tlsmint_certificate_renewal_timestamp_seconds"} {
				if got := len(got.names(fam)); got != tt.want {
					t.Errorf("%s series: got %d, want %d", fam, got, tt.want)
				}
			}
			// The soonest: those with the smallest k, at now+1h+k minutes.
			var want []string
			sorted := slices.Clone(infos)
			slices.SortFunc(sorted, func(a, b record.Certificate) int { return a.NotAfter.Compare(b.NotAfter) })
			for _, info := range sorted[:tt.want] {
				want = append(want, info.Name)
			}
			slices.Sort(want)
			if !slices.Equal(names, want) {
				t.Errorf("per-name series: got names %v…, want the %d soonest-expiring %v…", head(names), tt.want, head(want))
			}
			if v := got.value(t, "tlsmint_metrics_names_omitted"); v != float64(n-tt.want) {
				t.Errorf("names_omitted: got %v, want %d", v, n-tt.want)
			}
			if v := got.value(t, "tlsmint_certificates", "state=valid"); v != n {
				t.Errorf("certificates{valid}: got %v, want %d", v, n)
			}
			// No lint here: promlint's checks grow with the square of
			// the series; TestStates lints every kind of series.
		})
	}
}

func head(s []string) []string { return s[:min(3, len(s))] }

// The aggregates and the ready value for each kind of state.
func TestStates(t *testing.T) {
	clk := newClock()
	now := clk.now()
	day := 24 * time.Hour
	info := func(name string, left time.Duration, mod func(*record.Certificate)) record.Certificate {
		i := record.Certificate{Name: name, Issuer: testIssuer, Stored: true}
		if left != 0 {
			i.NotAfter, i.NotBefore = now.Add(left), now.Add(left-90*day)
		}
		if mod != nil {
			mod(&i)
		}
		return i
	}
	failing := func(i *record.Certificate) { i.LastError, i.LastErrorAt = "acme: rateLimited", now }
	infos := []record.Certificate{
		info("healthy.test", 60*day, nil),
		info("month.test", 20*day, nil),
		info("week.test", 5*day, nil),
		info("day.test", time.Hour, nil),
		info("failing.test", 3*day, failing),
		info("expired.test", -time.Hour, nil),
		info("missing.test", 0, func(i *record.Certificate) { i.Managed = true }),
		info("unstored.test", 80*day, func(i *record.Certificate) { i.Stored = false }),
	}
	c := fake(infos, Options{}, clk)
	defer c.Close()
	got := scrape(t, c)
	ready := map[string]float64{
		"healthy.test": 1, "month.test": 1, "week.test": 1, "day.test": 1, "unstored.test": 1,
		"failing.test": 0, "expired.test": 0, "missing.test": 0,
	}
	for name, want := range ready {
		if v := got.value(t, "tlsmint_certificate_ready", "name="+name, "issuer="+testIssuer); v != want {
			t.Errorf("ready{%s}: got %v, want %v", name, v, want)
		}
	}
	aggregates := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"tlsmint_certificates", []string{"state=valid"}, 6},
		{"tlsmint_certificates", []string{"state=expired"}, 1},
		{"tlsmint_certificates", []string{"state=missing"}, 1},
		{"tlsmint_certificates_expiring", []string{"within=1d"}, 1},
		{"tlsmint_certificates_expiring", []string{"within=7d"}, 3},
		{"tlsmint_certificates_expiring", []string{"within=30d"}, 4},
		{"tlsmint_certificates_failing", nil, 1},
		{"tlsmint_certificates_not_stored", nil, 1},
		{"tlsmint_metrics_names_omitted", nil, 0},
	}
	for _, a := range aggregates {
		if v := got.value(t, a.name, a.labels...); v != a.want {
			t.Errorf("%s%v: got %v, want %v", a.name, a.labels, v, a.want)
		}
	}
	if _, ok := got.lookup("tlsmint_certificate_not_after_timestamp_seconds", "name=missing.test"); ok {
		t.Errorf("not_after{missing.test}: got a series, want none without a certificate")
	}
	lint(t, c)
	// A day later, day.test has expired.
	clk.add(day)
	got = scrape(t, c)
	if v := got.value(t, "tlsmint_certificates", "state=expired"); v != 2 {
		t.Errorf("a day later, certificates{expired}: got %v, want 2", v)
	}
	if v := got.value(t, "tlsmint_certificate_ready", "name=day.test"); v != 0 {
		t.Errorf("a day later, ready{day.test}: got %v, want 0", v)
	}
}

// Events change a name's series between reads of the names' state.
func TestEvents(t *testing.T) {
	clk := newClock()
	now := clk.now()
	notAfter, renewAt := now.Add(90*24*time.Hour), now.Add(60*24*time.Hour)
	later := notAfter.Add(7 * 24 * time.Hour)
	ev := func(typ autotls.EventType, mod func(*autotls.Event)) autotls.Event {
		e := autotls.Event{Type: typ, Name: "x.test", Issuer: testIssuer}
		if mod != nil {
			mod(&e)
		}
		return e
	}
	withCert := func(e *autotls.Event) {
		e.NotAfter, e.RenewAt, e.Reason = notAfter, renewAt, autotls.ReasonSchedule
	}
	fail := func(e *autotls.Event) { e.Err, e.RetryAt = errors.New("boom"), now.Add(time.Minute) }
	type want struct {
		ready    float64
		notAfter time.Time // zero: no series
		reason   string
		failing  float64
		unstored float64
	}
	tests := []struct {
		name   string
		events []autotls.Event
		want   want
	}{
		{"obtained", []autotls.Event{ev(autotls.EventObtained, withCert)},
			want{ready: 1, notAfter: notAfter, reason: autotls.ReasonSchedule}},
		{"first order failed", []autotls.Event{ev(autotls.EventFailed, fail)},
			want{ready: 0, failing: 1}},
		{"failed, then obtained", []autotls.Event{ev(autotls.EventFailed, fail), ev(autotls.EventObtained, withCert)},
			want{ready: 1, notAfter: notAfter, reason: autotls.ReasonSchedule}},
		{"renewal failing", []autotls.Event{ev(autotls.EventObtained, withCert), ev(autotls.EventFailed, func(e *autotls.Event) { fail(e); e.NotAfter = notAfter })},
			want{ready: 0, notAfter: notAfter, reason: autotls.ReasonSchedule, failing: 1}},
		{"renewal failing, then renewed", []autotls.Event{
			ev(autotls.EventObtained, withCert),
			ev(autotls.EventExpiring, func(e *autotls.Event) { fail(e); e.NotAfter = notAfter }),
			ev(autotls.EventRenewed, func(e *autotls.Event) { withCert(e); e.NotAfter = later }),
		}, want{ready: 1, notAfter: later, reason: autotls.ReasonSchedule}},
		{"ARI moved the renewal", []autotls.Event{
			ev(autotls.EventObtained, withCert),
			ev(autotls.EventScheduled, func(e *autotls.Event) { withCert(e); e.Reason = autotls.ReasonARI }),
		}, want{ready: 1, notAfter: notAfter, reason: autotls.ReasonARI}},
		{"not stored", []autotls.Event{ev(autotls.EventObtained, withCert), ev(autotls.EventNotStored, withCert)},
			want{ready: 1, notAfter: notAfter, reason: autotls.ReasonSchedule, unstored: 1}},
		{"not stored, then stored", []autotls.Event{ev(autotls.EventObtained, withCert), ev(autotls.EventNotStored, withCert), ev(autotls.EventStored, nil)},
			want{ready: 1, notAfter: notAfter, reason: autotls.ReasonSchedule}},
		{"loaded", []autotls.Event{ev(autotls.EventLoaded, withCert)},
			want{ready: 1, notAfter: notAfter, reason: autotls.ReasonSchedule}},
		{"expired", []autotls.Event{ev(autotls.EventObtained, withCert), ev(autotls.EventExpired, func(e *autotls.Event) { e.NotAfter = notAfter })},
			want{ready: 0, notAfter: notAfter, reason: autotls.ReasonSchedule, failing: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fake(nil, Options{RefreshInterval: -1}, clk)
			defer c.Close()
			for _, e := range tt.events {
				c.OnEvent(e)
			}
			got := scrape(t, c)
			if v := got.value(t, "tlsmint_certificate_ready", "name=x.test"); v != tt.want.ready {
				t.Errorf("ready: got %v, want %v", v, tt.want.ready)
			}
			v, ok := got.lookup("tlsmint_certificate_not_after_timestamp_seconds", "name=x.test", "issuer="+testIssuer)
			switch {
			case tt.want.notAfter.IsZero() && ok:
				t.Errorf("not_after: got %v, want no series", v)
			case !tt.want.notAfter.IsZero() && v != float64(tt.want.notAfter.Unix()):
				t.Errorf("not_after: got %v (present %v), want %d", v, ok, tt.want.notAfter.Unix())
			}
			if tt.want.reason != "" {
				if v := got.value(t, "tlsmint_certificate_renewal_timestamp_seconds", "name=x.test", "reason="+tt.want.reason); v != float64(renewAt.Unix()) {
					t.Errorf("renewal{%s}: got %v, want %d", tt.want.reason, v, renewAt.Unix())
				}
			}
			if v := got.value(t, "tlsmint_certificates_failing"); v != tt.want.failing {
				t.Errorf("failing: got %v, want %v", v, tt.want.failing)
			}
			if v := got.value(t, "tlsmint_certificates_not_stored"); v != tt.want.unstored {
				t.Errorf("not_stored: got %v, want %v", v, tt.want.unstored)
			}
		})
	}
}

// Issuances are counted by result and timed from their first newOrder.
func TestIssuanceCounts(t *testing.T) {
	clk := newClock()
	c := fake(nil, Options{RefreshInterval: -1}, clk)
	defer c.Close()
	newOrder := func(name string) {
		c.ObserveExchange(acme.Exchange{Time: clk.now(), Latency: 20 * time.Millisecond, Directory: testIssuer, Operation: acme.OpNewOrder,
			Identifiers: []acme.Identifier{{Type: "dns", Value: name}}, Status: 201})
	}
	newOrder("a.test")
	clk.add(3 * time.Second)
	newOrder("a.test") // a second order (another issuer) does not restart the clock
	clk.add(time.Second)
	c.OnEvent(autotls.Event{Type: autotls.EventIssuerFailed, Name: "a.test", Issuer: testIssuer, Err: errors.New("x")})
	c.OnEvent(autotls.Event{Type: autotls.EventObtained, Name: "a.test", Issuer: "https://other.test/dir", NotAfter: clk.now().Add(time.Hour)})
	newOrder("b.test")
	clk.add(2 * time.Second)
	c.OnEvent(autotls.Event{Type: autotls.EventFailed, Name: "b.test", Issuer: testIssuer, Err: errors.New("x")})
	c.OnEvent(autotls.Event{Type: autotls.EventLoaded, Name: "c.test", Issuer: testIssuer, NotAfter: clk.now().Add(time.Hour)})
	c.OnEvent(autotls.Event{Type: autotls.EventNotRenewed, Name: "d.test", Issuer: testIssuer, NotAfter: clk.now().Add(time.Hour), Err: errors.New("gone")})

	got := scrape(t, c)
	counts := []struct {
		labels []string
		want   float64
	}{
		{[]string{"issuer=" + testIssuer, "result=fallback"}, 1},
		{[]string{"issuer=https://other.test/dir", "result=success"}, 1},
		{[]string{"issuer=" + testIssuer, "result=failure"}, 1},
		{[]string{"issuer=" + testIssuer, "result=not_renewed"}, 1},
	}
	for _, tc := range counts {
		if v := got.value(t, "tlsmint_issuance_total", tc.labels...); v != tc.want {
			t.Errorf("issuance_total%v: got %v, want %v", tc.labels, v, tc.want)
		}
	}
	if v := got.sum("tlsmint_issuance_total"); v != 4 {
		t.Errorf("issuance_total: got %v in all, want 4 (a load is no issuance)", v)
	}
	durations := []struct {
		issuer, result string
		sum            float64
	}{
		{"https://other.test/dir", "success", 4},
		{testIssuer, "failure", 2},
	}
	for _, d := range durations {
		s := got.series("tlsmint_issuance_duration_seconds", map[string]string{"issuer": d.issuer, "result": d.result})
		if len(s) != 1 || s[0].GetHistogram().GetSampleCount() != 1 || s[0].GetHistogram().GetSampleSum() != d.sum {
			t.Errorf("issuance_duration_seconds{%s,%s}: got %v, want one sample of %v s", d.issuer, d.result, s, d.sum)
		}
	}
	if v := got.value(t, "tlsmint_acme_requests_total", "operation=newOrder", "status=201", "problem="); v != 3 {
		t.Errorf("acme_requests_total{newOrder}: got %v, want 3", v)
	}
	lint(t, c)
}

// Rate limits are reported while they run, for at most MaxNames names.
func TestRateLimits(t *testing.T) {
	clk := newClock()
	now := clk.now()
	c := fake(nil, Options{MaxNames: 2, RefreshInterval: -1}, clk)
	defer c.Close()
	limit := func(name string, d time.Duration) {
		c.OnEvent(autotls.Event{Type: autotls.EventRateLimited, Name: name, Issuer: testIssuer, Err: acme.ErrRateLimited, RetryAt: now.Add(d)})
	}
	limit("a.test", time.Hour)
	limit("b.test", 2*time.Hour)
	limit("c.test", 30*time.Minute) // ends before both: not kept
	limit("d.test", 3*time.Hour)    // replaces a.test, which ends soonest
	got := scrape(t, c)
	if names, want := got.names("tlsmint_rate_limited_until_timestamp_seconds"), []string{"b.test", "d.test"}; !slices.Equal(names, want) {
		t.Errorf("rate_limited_until names: got %v, want %v", names, want)
	}
	if v := got.value(t, "tlsmint_rate_limited_until_timestamp_seconds", "name=d.test"); v != float64(now.Add(3*time.Hour).Unix()) {
		t.Errorf("rate_limited_until{d.test}: got %v, want %d", v, now.Add(3*time.Hour).Unix())
	}
	if v := got.value(t, "tlsmint_rate_limited_total", "issuer="+testIssuer); v != 4 {
		t.Errorf("rate_limited_total: got %v, want 4", v)
	}
	clk.add(150 * time.Minute)
	got = scrape(t, c)
	if names, want := got.names("tlsmint_rate_limited_until_timestamp_seconds"), []string{"d.test"}; !slices.Equal(names, want) {
		t.Errorf("after b.test's wait ended: got %v, want %v", names, want)
	}
}

// An event that arrives while Manager.Certificates is being read is
// applied to the new copy, which otherwise replaces the old one.
func TestRefreshKeepsEventsDuringRead(t *testing.T) {
	clk := newClock()
	now := clk.now()
	old := now.Add(10 * 24 * time.Hour)
	renewed := now.Add(90 * 24 * time.Hour)
	inRead, proceed := make(chan struct{}), make(chan struct{})
	reads := 0
	c := New(nil, Options{RefreshInterval: -1})
	c.now = clk.now
	c.source = func(context.Context) ([]record.Certificate, error) {
		reads++
		infos := []record.Certificate{
			{Name: "a.test", Issuer: testIssuer, NotAfter: old, Stored: true},
			{Name: "b.test", Issuer: testIssuer, NotAfter: old, Stored: true},
		}
		if reads == 2 {
			close(inRead)
			<-proceed
		}
		return infos, nil
	}
	defer c.Close()
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Before the second read: an event the read will include.
	c.OnEvent(autotls.Event{Type: autotls.EventFailed, Name: "b.test", Issuer: testIssuer, NotAfter: old, Err: errors.New("x")})
	done := make(chan error, 1)
	go func() { done <- c.Refresh(context.Background()) }()
	<-inRead
	c.OnEvent(autotls.Event{Type: autotls.EventRenewed, Name: "a.test", Issuer: testIssuer, NotAfter: renewed})
	scrape(t, c) // applies the event to the old copy meanwhile
	close(proceed)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := scrape(t, c)
	if v := got.value(t, "tlsmint_certificate_not_after_timestamp_seconds", "name=a.test"); v != float64(renewed.Unix()) {
		t.Errorf("a.test renewed during the read: got not_after %v, want %d", v, renewed.Unix())
	}
	// The read says b.test is not failing (its source has no LastError):
	// the event from before the read is superseded.
	if v := got.value(t, "tlsmint_certificate_ready", "name=b.test"); v != 1 {
		t.Errorf("b.test: got ready %v, want 1 as the read says", v)
	}
}

// The first scrape reads Manager.Certificates; later ones read it again in
// the background once the copy is older than RefreshInterval; Close
// waits for that read and stops further ones.
func TestBackgroundRefresh(t *testing.T) {
	clk := newClock()
	reads := make(chan int, 10)
	n := 0
	c := New(nil, Options{RefreshInterval: time.Minute})
	c.now = clk.now
	c.source = func(context.Context) ([]record.Certificate, error) {
		n++
		reads <- n
		infos := simulated(n, clk.now()) // one more name per read
		if n == 3 {
			return infos[:1], errors.New("listing failed")
		}
		return infos, nil
	}
	got := scrape(t, c)
	if v := got.value(t, "tlsmint_certificates", "state=valid"); v != 1 {
		t.Fatalf("first scrape: got %v valid, want 1 (read synchronously)", v)
	}
	scrape(t, c)
	if len(reads) != 1 {
		t.Fatalf("second scrape within the interval: got %d reads, want 1", len(reads))
	}
	clk.add(time.Minute)
	got = scrape(t, c) // starts a background read, answers from the copy
	if v := got.value(t, "tlsmint_certificates", "state=valid"); v != 1 && v != 2 {
		t.Errorf("stale scrape: got %v valid, want 1 (or 2 if the read was quick)", v)
	}
	if r := <-reads; r != 1 {
		t.Fatalf("got read %d, want 1", r)
	}
	if r := <-reads; r != 2 {
		t.Fatalf("got read %d, want 2", r)
	}
	// Wait for the background read to finish: Refresh takes its turn.
	if err := c.Refresh(context.Background()); err == nil {
		t.Fatalf("Refresh (read 3, which fails): got %v, want an error", err)
	}
	got = scrape(t, c)
	if v := got.value(t, "tlsmint_metrics_refresh_errors_total"); v != 1 {
		t.Errorf("refresh_errors_total: got %v, want 1", v)
	}
	if v := got.value(t, "tlsmint_certificates", "state=valid"); v != 1 {
		t.Errorf("after a partial read: got %v valid, want the 1 it returned", v)
	}
	clk.add(time.Minute)
	c.Close()
	scrape(t, c)
	if len(reads) != 1 { // read 3 only
		t.Errorf("after Close: got %d more reads, want none", len(reads)-1)
	}
}

// A panicking Manager.Certificates is a failed read, not a crash.
func TestRefreshPanic(t *testing.T) {
	c := New(nil, Options{})
	defer c.Close()
	c.source = func(context.Context) ([]record.Certificate, error) { panic("storage exploded") }
	if err := c.Refresh(context.Background()); err == nil {
		t.Fatal("Refresh: got nil, want the panic as an error")
	}
	got := scrape(t, c)
	if v := got.value(t, "tlsmint_metrics_refresh_errors_total"); v != 1 {
		t.Errorf("refresh_errors_total: got %v, want 1", v)
	}
}

func TestLabels(t *testing.T) {
	problems := []struct{ in, want string }{
		{"", ""},
		{"urn:ietf:params:acme:error:rateLimited", "rateLimited"},
		{"urn:ietf:params:acme:error:ratelimited", "rateLimited"},
		{"URN:IETF:PARAMS:ACME:ERROR:badNonce", "badNonce"},
		{"urn:ietf:params:acme:error:caa", "caa"},
		{"urn:ietf:params:acme:error:", "other"},
		{"urn:ietf:params:acme:error:madeUpByTheCA", "other"},
		{"about:blank", "other"},
		{"https://ca.example/problems/" + string(make([]byte, 300)), "other"},
	}
	for _, p := range problems {
		if got := problemLabel(p.in); got != p.want {
			t.Errorf("problemLabel(%.40q): got %q, want %q", p.in, got, p.want)
		}
	}
	statuses := []struct {
		in   int
		want string
	}{{0, "none"}, {-1, "none"}, {201, "201"}, {429, "429"}, {99, "other"}, {600, "other"}}
	for _, s := range statuses {
		if got := statusLabel(s.in); got != s.want {
			t.Errorf("statusLabel(%d): got %q, want %q", s.in, got, s.want)
		}
	}
}

// Events, scrapes and reads at once (run with -race): every name ends up
// counted once, whichever ran first; more pending names than flushPending
// are applied by OnEvent itself.
func TestConcurrent(t *testing.T) {
	const workers, perWorker = 4, flushPending
	clk := newClock()
	infos := simulated(workers*perWorker, clk.now())
	c := fake(infos, Options{RefreshInterval: -1}, clk)
	defer c.Close()
	done := make(chan struct{})
	for w := range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for _, info := range infos[w*perWorker : (w+1)*perWorker] {
				c.OnEvent(autotls.Event{Type: autotls.EventObtained, Name: info.Name, Issuer: testIssuer, NotAfter: info.NotAfter, RenewAt: info.RenewAt, Reason: info.RenewReason})
			}
		}()
	}
	for range 3 {
		scrape(t, c)
		if err := c.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	for range workers {
		<-done
	}
	got := scrape(t, c)
	if v := got.value(t, "tlsmint_certificates", "state=valid"); v != workers*perWorker {
		t.Errorf("certificates{valid}: got %v, want %d", v, workers*perWorker)
	}
	if v := got.value(t, "tlsmint_issuance_total", "issuer="+testIssuer, "result=success"); v != workers*perWorker {
		t.Errorf("issuance_total: got %v, want %d", v, workers*perWorker)
	}
}

// A read of the Manager's certificates that takes long is repeated no
// sooner than 20 times its duration after it started, whatever
// RefreshInterval says.
func TestSlowReadPaced(t *testing.T) {
	clk := newClock()
	reads := make(chan struct{}, 10)
	c := New(nil, Options{RefreshInterval: time.Minute})
	defer c.Close()
	c.now = clk.now
	c.source = func(context.Context) ([]record.Certificate, error) {
		clk.add(10 * time.Minute) // a read of a million stored certificates
		reads <- struct{}{}
		return simulated(1, clk.now()), nil
	}
	scrape(t, c) // the first read, synchronous: 10 minutes
	<-reads
	for _, step := range []time.Duration{time.Minute, 100 * time.Minute} {
		clk.add(step)
		scrape(t, c)
		select {
		case <-reads:
			t.Fatalf("a scrape %v after a 10-minute read started another", step)
		case <-time.After(50 * time.Millisecond):
		}
	}
	clk.add(100 * time.Minute) // 211 minutes after the first read began
	scrape(t, c)
	select {
	case <-reads:
	case <-time.After(10 * time.Second):
		t.Fatal("no read 211 minutes after a 10-minute one")
	}
}
