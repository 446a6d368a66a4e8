package autotls_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/storage"
)

// Tests of the lifecycle on a test clock: weeks and months of renewals,
// outages, back-offs and rate limits, run in milliseconds of real time.
// Pebble issues for real (accounts, orders, validation on loopback), and
// clockCA dates its certificates by the test clock.

// clockCA is a Wrap that makes a test CA issue as if the world's time were
// the test clock's: each leaf Pebble signs is signed again, with its
// serial, names, key and lifetime, from the clock's now, by an issuer of
// the test's whose key identifier is Pebble's intermediate's (so ARI
// certificate IDs and "replaces" still name Pebble's certificates). Its
// renewalInfo answers are computed on the clock too: window of each
// certificate, with a Retry-After of ariRetry. It records the clock's time
// of every newOrder that reaches Pebble.
type clockCA struct {
	clk      *autotls.FakeClock
	window   func(notBefore, notAfter time.Time) (start, end time.Time)
	ariRetry time.Duration

	key  *ecdsa.PrivateKey
	mu   sync.Mutex
	by   map[string]*x509.Certificate // issuers, by key identifier
	pool *x509.CertPool               // the issuers, as roots
	// leaves are the re-signed leaves, by serial in hex.
	leaves map[string]*x509.Certificate
	orders []time.Time
	ari    int
	// down makes every ACME request fail with a 503 and a Retry-After of
	// outageRetryAfter, as a CA in a maintenance window answers; over its
	// bound of 5 s the client does not repeat a request within the call
	// (its transient retries wait on the real clock), and under the
	// Manager's back-off it does not change when the Manager tries again.
	down atomic.Bool
	// noOrders answers every newOrder so, and nothing else.
	noOrders atomic.Bool
}

const outageRetryAfter = 30 * time.Second

// newClockCA returns a clockCA on clk whose ARI window is the last two
// days before a third of the lifetime is left (Let's Encrypt's shape), or
// window when not nil.
func newClockCA(t testing.TB, clk *autotls.FakeClock, window func(nb, na time.Time) (time.Time, time.Time)) *clockCA {
	t.Helper()
	key := testsetup.Key(t)
	if window == nil {
		window = func(nb, na time.Time) (time.Time, time.Time) {
			end := na.Add(-na.Sub(nb) / 3)
			return end.Add(-48 * time.Hour), end
		}
	}
	return &clockCA{clk: clk, window: window, ariRetry: 24 * time.Hour, key: key,
		by: map[string]*x509.Certificate{}, pool: x509.NewCertPool(), leaves: map[string]*x509.Certificate{}}
}

// issuer returns the test's issuer with key identifier skid.
func (c *clockCA) issuer(t testing.TB, skid []byte) *x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.by[string(skid)]; p != nil {
		return p
	}
	now := c.clk.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(int64(len(c.by) + 1)), Subject: pkix.Name{CommonName: "clock CA " + hex.EncodeToString(skid)},
		NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, SubjectKeyId: skid,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &c.key.PublicKey, c.key)
	if err != nil {
		t.Error(err)
		return nil
	}
	p, _ := x509.ParseCertificate(der)
	c.by[string(skid)], _ = p, c.pool.AppendCertsFromPEM(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return p
}

// resign returns Pebble's chain signed again from the clock's now.
func (c *clockCA) resign(t testing.TB, chain []byte) []byte {
	blk, _ := pem.Decode(chain)
	if blk == nil {
		t.Error("clockCA: no certificate in the chain")
		return chain
	}
	orig, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Error(err)
		return chain
	}
	parent := c.issuer(t, orig.AuthorityKeyId)
	if parent == nil {
		return chain
	}
	now := c.clk.Now()
	tmpl := &x509.Certificate{
		SerialNumber: orig.SerialNumber, Subject: orig.Subject, DNSNames: orig.DNSNames, IPAddresses: orig.IPAddresses,
		NotBefore: now, NotAfter: now.Add(orig.NotAfter.Sub(orig.NotBefore)),
		KeyUsage: orig.KeyUsage, ExtKeyUsage: orig.ExtKeyUsage, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, orig.PublicKey, c.key)
	if err != nil {
		t.Error(err)
		return chain
	}
	leaf, _ := x509.ParseCertificate(der)
	c.mu.Lock()
	c.leaves[leaf.SerialNumber.Text(16)] = leaf
	c.mu.Unlock()
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: parent.Raw})...)
}

// renewalInfo answers an ARI request for the certificate ID id.
func (c *clockCA) renewalInfo(w http.ResponseWriter, id string) {
	_, serial, _ := strings.Cut(id, ".")
	b, err := base64.RawURLEncoding.DecodeString(serial)
	c.mu.Lock()
	c.ari++
	leaf := c.leaves[new(big.Int).SetBytes(b).Text(16)]
	c.mu.Unlock()
	if err != nil || leaf == nil {
		http.Error(w, `{"type":"urn:ietf:params:acme:error:malformed","detail":"unknown certificate"}`, http.StatusNotFound)
		return
	}
	start, end := c.window(leaf.NotBefore, leaf.NotAfter)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Retry-After", strconv.Itoa(int(c.ariRetry/time.Second)))
	json.NewEncoder(w).Encode(map[string]any{"suggestedWindow": map[string]time.Time{"start": start.UTC(), "end": end.UTC()}})
}

// outage answers as the CA does while down.
func (c *clockCA) outage(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Retry-After", strconv.Itoa(int(outageRetryAfter/time.Second)))
	w.WriteHeader(http.StatusServiceUnavailable)
	w.Write([]byte(`{"type":"urn:ietf:params:acme:error:serverInternal","detail":"clockCA: down for maintenance"}`))
}

func (c *clockCA) wrap(t testing.TB) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c.down.Load() {
				c.outage(w)
				return
			}
			switch {
			case strings.HasPrefix(r.URL.Path, "/draft-ietf-acme-ari-03/renewalInfo/"):
				c.renewalInfo(w, strings.TrimPrefix(r.URL.Path, "/draft-ietf-acme-ari-03/renewalInfo/"))
				return
			case r.URL.Path == "/order-plz":
				c.mu.Lock()
				c.orders = append(c.orders, c.clk.Now())
				c.mu.Unlock()
				if c.noOrders.Load() {
					c.outage(w)
					return
				}
			case strings.HasPrefix(r.URL.Path, "/certZ/"):
				rec := httptest.NewRecorder()
				next.ServeHTTP(rec, r)
				body := rec.Body.Bytes()
				if rec.Code == http.StatusOK {
					body = c.resign(t, body)
				}
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.Header().Del("Content-Length")
				w.WriteHeader(rec.Code)
				w.Write(body)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// leafBySerial returns the re-signed leaf with the serial in hex (as
// events give it).
func (c *clockCA) leafBySerial(serial string) (*x509.Certificate, bool) {
	n, ok := new(big.Int).SetString(serial, 16)
	if !ok {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.leaves[n.Text(16)]
	return l, l != nil
}

// ariCount returns the renewalInfo requests answered.
func (c *clockCA) ariCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ari
}

// orderTimes returns the clock's time of each newOrder that reached Pebble.
func (c *clockCA) orderTimes() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Time(nil), c.orders...)
}

// clockedEnv is a test environment on a test clock: a CA dating its
// certificates by the clock, and Managers on it.
type clockedEnv struct {
	*env
	clk *autotls.FakeClock
	cca *clockCA
}

func newClockedEnv(t testing.TB, opts testpebble.Options, window func(nb, na time.Time) (time.Time, time.Time)) *clockedEnv {
	t.Helper()
	clk := autotls.NewFakeClock(time.Now())
	cca := newClockCA(t, clk, window)
	wrap := opts.Wrap
	opts.Wrap = func(h http.Handler) http.Handler {
		if wrap != nil {
			h = wrap(h)
		}
		return cca.wrap(t)(h)
	}
	return &clockedEnv{env: newEnv(t, opts), clk: clk, cca: cca}
}

// manager is env.manager for a Manager on the test clock.
func (c *clockedEnv) manager(t testing.TB, mod func(*autotls.Manager)) *autotls.Manager {
	t.Helper()
	return c.env.manager(t, nil, func(m *autotls.Manager) {
		autotls.SetFakeClockForTest(m, c.clk)
		if mod != nil {
			mod(m)
		}
	})
}

// advance moves the clock d ahead with m's due work done on the way.
func (c *clockedEnv) advance(t testing.TB, d time.Duration, ms ...*autotls.Manager) {
	t.Helper()
	advanceT(t, c.clk, d, ms...)
}

// advanceT moves clk d ahead with the due work of ms done on the way.
func advanceT(t testing.TB, clk *autotls.FakeClock, d time.Duration, ms ...*autotls.Manager) {
	t.Helper()
	if err := clk.Advance(d, ms...); err != nil {
		t.Fatal(err)
	}
}

// serving returns the leaf m serves for name, failing the test unless it
// is valid at the clock's time.
func (c *clockedEnv) serving(t testing.TB, m *autotls.Manager, name string) *x509.Certificate {
	t.Helper()
	cert, err := m.GetCertificate(hello(name))
	if err != nil {
		t.Fatalf("at %v: GetCertificate(%s): %v", c.clk.Now(), name, err)
	}
	if now := c.clk.Now(); now.Before(cert.Leaf.NotBefore) || !now.Before(cert.Leaf.NotAfter) {
		t.Fatalf("at %v: served a certificate valid %v to %v", now, cert.Leaf.NotBefore, cert.Leaf.NotAfter)
	}
	return cert.Leaf
}

// handshake is a TLS handshake with m's server at addr that verifies the
// chain against the clockCA's issuers at the clock's time.
func (c *clockedEnv) handshake(t testing.TB, addr, name string) *x509.Certificate {
	t.Helper()
	var leaf *x509.Certificate
	cfg := &tls.Config{ServerName: name, InsecureSkipVerify: true, VerifyConnection: func(cs tls.ConnectionState) error {
		c.cca.mu.Lock()
		roots := c.cca.pool.Clone()
		c.cca.mu.Unlock()
		leaf = cs.PeerCertificates[0]
		_, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, CurrentTime: c.clk.Now()})
		return err
	}}
	d := tls.Dialer{Config: cfg}
	conn, err := d.DialContext(ctxT(t), "tcp", addr)
	if err != nil {
		t.Fatalf("at %v: handshake: %v", c.clk.Now(), err)
	}
	conn.Close()
	return leaf
}

// clockEvents records events with the test clock's time.
type clockEvents struct {
	clk *autotls.FakeClock
	mu  sync.Mutex
	all []clockEvent
}

type clockEvent struct {
	autotls.Event
	at time.Time
}

func (l *clockEvents) on(e autotls.Event) {
	at := l.clk.Now()
	l.mu.Lock()
	l.all = append(l.all, clockEvent{e, at})
	l.mu.Unlock()
}

// of returns the events of type typ.
func (l *clockEvents) of(typ autotls.EventType) []clockEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []clockEvent
	for _, e := range l.all {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func (l *clockEvents) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b bytes.Buffer
	for _, e := range l.all {
		b.WriteString("\n  " + e.at.Format(time.DateTime) + " " + string(e.Type) + " " + e.Name + " serial=" + e.Serial)
		if e.Err != nil {
			b.WriteString(" err=" + e.Err.Error())
		}
	}
	return b.String()
}

// A week-long outage of the CA, from two days before the renewal window
// of a 90-day certificate: every hour of the week the certificate is
// served, valid; the attempts back off to one every four hours (at most
// the ones counted here reach the CA); once the CA is back the renewal
// succeeds within one back-off, with one order, and the new certificate
// is served with no gap.
func TestCAOutageWeek(t *testing.T) {
	t.Parallel()
	c := newClockedEnv(t, testpebble.Options{}, nil)
	ev := &clockEvents{clk: c.clk}
	m := c.manager(t, func(m *autotls.Manager) { m.OnEvent = ev.on })
	first := c.serving(t, m, "example.com")
	if life := first.NotAfter.Sub(first.NotBefore); life < 89*day || life > 91*day {
		t.Fatalf("certificate of %v, want Pebble's 90 days", life)
	}
	windowStart, _ := c.cca.window(first.NotBefore, first.NotAfter)
	c.advance(t, windowStart.Add(-2*day).Sub(c.clk.Now()), m)
	if leaf := c.serving(t, m, "example.com"); !leaf.Equal(first) {
		t.Fatalf("renewed at %v, before the ARI window starting %v", c.clk.Now(), windowStart)
	}
	c.cca.down.Store(true)
	down := c.clk.Now()
	before := totalRequests(c.ca)
	for range 7 * 24 {
		c.advance(t, time.Hour, m)
		if leaf := c.serving(t, m, "example.com"); !leaf.Equal(first) {
			t.Fatalf("at %v: serving serial %v while the CA is down, want the first certificate", c.clk.Now(), leaf.SerialNumber)
		}
	}
	failed := ev.of(autotls.EventFailed)
	// The renewal comes due in the ARI window, from day 2 of the outage:
	// for the five days left the attempts double from FailureBackoff (a
	// minute) to the 4-hour cap (9 attempts, 8.5 hours), then come once
	// per 4 hours -10 % at most: 9 + 112h/3.6h + 1 = 42. The ARI polls
	// fail too and are tried again hourly: 7×24 at most.
	const maxAttempts, maxPolls = 42, 7 * 24
	requests := totalRequests(c.ca) - before
	if len(failed) < 9 || len(failed) > maxAttempts {
		t.Fatalf("%d failed renewals in the outage, want 9 to %d; events %s", len(failed), maxAttempts, ev)
	}
	// An attempt is a nonce and a newOrder at most (the directory is
	// cached); a poll is one GET.
	if requests > 2*len(failed)+maxPolls {
		t.Fatalf("%d requests reached the CA in the outage for %d failed renewals, want at most %d", requests, len(failed), 2*len(failed)+maxPolls)
	}
	for i := 1; i < len(failed); i++ {
		if gap := failed[i].at.Sub(failed[i-1].at); gap > 4*time.Hour+25*time.Minute {
			t.Errorf("attempts %d and %d are %v apart, want at most the 4-hour cap (+10 %%)", i, i+1, gap)
		}
	}
	if first := failed[0].at; first.Before(windowStart) {
		t.Errorf("first attempt at %v, before the ARI window starting %v", first, windowStart)
	}
	orders := len(c.cca.orderTimes())
	c.cca.down.Store(false)
	back := c.clk.Now()
	var renewed *x509.Certificate
	for c.clk.Now().Sub(back) < 5*time.Hour {
		c.advance(t, 10*time.Minute, m)
		if leaf := c.serving(t, m, "example.com"); !leaf.Equal(first) {
			renewed = leaf
			break
		}
	}
	if renewed == nil {
		t.Fatalf("not renewed within 5 hours of the CA's return (outage %v to %v); events %s", down, back, ev)
	}
	if n := len(c.cca.orderTimes()) - orders; n != 1 {
		t.Errorf("%d orders after the CA's return, want 1", n)
	}
	if !renewed.NotBefore.After(back) || renewed.NotAfter.Sub(c.clk.Now()) < 89*day {
		t.Errorf("renewed certificate valid %v to %v, want a fresh 90 days from %v", renewed.NotBefore, renewed.NotAfter, back)
	}
	if n := len(ev.of(autotls.EventRenewed)); n != 1 {
		t.Errorf("%d renewed events, want 1", n)
	}
}

// A certificate's 90-day life on the test clock, with the CA's renewal
// information and a rate limit: the renewal comes in the CA's ARI window
// (days 40 to 42, well before the Manager's own window from day 51); the
// CA answers its first order rateLimited with a Retry-After of three
// hours, and the next order comes no sooner, on the test clock; the new
// certificate is renewed in its own ARI window in turn. Every day the
// certificate served is valid, the ARI polls are one a day (the CA's
// Retry-After) and the orders are exactly those four.
func TestLifetimeARIAndRateLimit(t *testing.T) {
	t.Parallel()
	window := func(nb, na time.Time) (time.Time, time.Time) { return nb.Add(40 * day), nb.Add(42 * day) }
	c := newClockedEnv(t, testpebble.Options{}, window)
	ev := &clockEvents{clk: c.clk}
	m := c.manager(t, func(m *autotls.Manager) { m.OnEvent = ev.on })
	first := c.serving(t, m, "example.com")
	const retryAfter = 3 * time.Hour
	if err := c.ca.RateLimit("newOrder", retryAfter, 1); err != nil {
		t.Fatal(err)
	}
	serials := map[string]bool{}
	for range 85 {
		c.advance(t, day, m)
		serials[c.serving(t, m, "example.com").SerialNumber.String()] = true
	}
	limited := ev.of(autotls.EventRateLimited)
	if len(limited) != 1 {
		t.Fatalf("%d rate-limited events, want 1; events %s", len(limited), ev)
	}
	w1s, w1e := window(first.NotBefore, first.NotAfter)
	if at := limited[0].at; at.Before(w1s) || at.After(w1e) {
		t.Errorf("first renewal order at %v, want in the ARI window %v to %v", at, w1s, w1e)
	}
	if !limited[0].RetryAt.Equal(limited[0].at.Add(retryAfter)) {
		t.Errorf("rate limited at %v until %v, want the Retry-After of %v", limited[0].at, limited[0].RetryAt, retryAfter)
	}
	orders := c.cca.orderTimes() // those Pebble answered: the limited one is not among them
	if len(orders) != 3 {
		t.Fatalf("%d orders reached the CA's order handler, want 3 (issuance, two renewals); at %v", len(orders), orders)
	}
	if n := c.ca.Requests("newOrder"); n != 4 {
		t.Errorf("%d newOrder requests, want 4 (with the limited one)", n)
	}
	if wait := orders[1].Sub(limited[0].at); wait < retryAfter || wait > retryAfter+retryAfter/10 {
		t.Errorf("ordered again %v after the rateLimited answer, want the Retry-After of %v (+10 %% at most)", wait, retryAfter)
	}
	renewed := ev.of(autotls.EventRenewed)
	if len(renewed) != 2 {
		t.Fatalf("%d renewals in 85 days, want 2; events %s", len(renewed), ev)
	}
	second, _ := c.cca.leafBySerial(renewed[0].Serial)
	if second == nil {
		t.Fatalf("renewed serial %s is not one of the CA's", renewed[0].Serial)
	}
	w2s, w2e := window(second.NotBefore, second.NotAfter)
	if orders[2].Before(w2s) || orders[2].After(w2e) {
		t.Errorf("second renewal ordered at %v, want in its ARI window %v to %v", orders[2], w2s, w2e)
	}
	if len(serials) != 3 {
		t.Errorf("served %d certificates over 85 days, want 3", len(serials))
	}
	// One poll a day, and a first one after each issuance.
	if n := c.cca.ariCount(); n < 85 || n > 85+3+2 {
		t.Errorf("%d ARI polls in 85 days, want one a day (85 to 90)", n)
	}
}

// A thousand stored certificates, all overdue when a Manager starts (the
// Manager was down while they came due): their renewals are spread over
// the catch-up hour, from their plan times to the orders the CA sees, on
// the test clock — every one ordered once within the hour, and no minute
// with more than 40 of the thousand orders (17 a minute on average;
// without the spread they came in one burst). The CA refuses the orders,
// and the failure back-off of a day keeps the retries out of the hour.
func TestThousandRenewalsSpread(t *testing.T) {
	t.Parallel()
	c := newClockedEnv(t, testpebble.Options{}, nil)
	c.cca.noOrders.Store(true)
	f := newFixture(t)
	store := storage.NewMemory()
	const n = 1000
	now := c.clk.Now()
	// 75 days into a 90-day life: past the renewal window, with more
	// than a tenth of the life left (less is renewed at once).
	names := storeDue(t, f, store, c.ca.DirectoryURL(), n, now.Add(-75*day), now.Add(15*day))
	m := c.env.manager(t, store, func(m *autotls.Manager) {
		m.FailureBackoff = day
		autotls.SetFakeClockForTest(m, c.clk)
	})
	if err := m.Manage(ctxT(t), names...); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	var plans []time.Duration
	for _, name := range names {
		p, ok := autotls.PlanTimeForTest(m, name)
		if !ok {
			t.Fatalf("%s is not planned", name)
		}
		plans = append(plans, p.Sub(now))
	}
	slices.Sort(plans)
	if plans[0] < 0 || plans[n-1] > time.Hour {
		t.Fatalf("renewals planned from %v to %v after the start, want within the catch-up hour", plans[0], plans[n-1])
	}
	for i := 0; i+10 < n; i++ {
		if plans[i+10]-plans[i] < time.Second {
			t.Fatalf("eleven renewals planned within %v (from %v on)", plans[i+10]-plans[i], plans[i])
		}
	}
	if got := len(c.cca.orderTimes()); got > 2 {
		t.Fatalf("%d orders at the start, want at most a couple", got)
	}
	c.advance(t, time.Hour+time.Minute, m)
	orders := c.cca.orderTimes()
	if len(orders) != n {
		t.Fatalf("%d orders in the catch-up hour, want %d (one per name)", len(orders), n)
	}
	perMinute := map[int64]int{}
	peak := 0
	for _, at := range orders {
		if at.Before(now) || at.After(now.Add(time.Hour)) {
			t.Fatalf("an order at %v, outside the hour from %v", at, now)
		}
		k := at.Sub(now).Milliseconds() / time.Minute.Milliseconds()
		perMinute[k]++
		peak = max(peak, perMinute[k])
	}
	if peak > 40 || len(perMinute) < 55 {
		t.Fatalf("orders in %d minutes of the hour, up to %d in one, want at least 55 minutes and at most 40 a minute", len(perMinute), peak)
	}
}
