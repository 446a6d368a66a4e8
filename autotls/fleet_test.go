package autotls_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testenv"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/storage"
	"github.com/tlsmint/tlsmint/storage/postgres"
)

// Tests of the lifecycle against a CA that loses its accounts or goes
// away, and of fleets of Managers sharing one storage.

// eventLog records a Manager's events, with the time each arrived, and
// lets a test wait until enough of one kind have arrived.
type eventLog struct {
	mu   sync.Mutex
	all  []loggedEvent
	more chan struct{} // closed, and replaced, on every event
	// seen counts, per type and name, the events next has returned.
	seen map[string]int
}

type loggedEvent struct {
	autotls.Event
	at time.Time
}

func newEventLog() *eventLog {
	return &eventLog{more: make(chan struct{}), seen: map[string]int{}}
}

// on is an OnEvent hook; it never blocks.
func (l *eventLog) on(e autotls.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, loggedEvent{e, time.Now()})
	close(l.more)
	l.more = make(chan struct{})
}

// matching returns the events of type typ for name so far, and a channel
// closed at the next event.
func (l *eventLog) matching(typ autotls.EventType, name string) ([]loggedEvent, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []loggedEvent
	for _, e := range l.all {
		if e.Type == typ && e.Name == name {
			out = append(out, e)
		}
	}
	return out, l.more
}

// waitN returns the first n events of type typ for name, waiting for them
// at most within.
func (l *eventLog) waitN(t *testing.T, typ autotls.EventType, name string, n int, within time.Duration) []loggedEvent {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		got, more := l.matching(typ, name)
		if len(got) >= n {
			return got[:n]
		}
		select {
		case <-more:
		case <-deadline.C:
			t.Fatalf("got %d %s events for %s within %v, want %d; all events: %s", len(got), typ, name, within, n, l)
		}
	}
}

// next returns the next event of type typ for name that next has not
// returned yet, waiting for it at most within.
func (l *eventLog) next(t *testing.T, typ autotls.EventType, name string, within time.Duration) autotls.Event {
	t.Helper()
	k := string(typ) + " " + name
	l.mu.Lock()
	n := l.seen[k]
	l.mu.Unlock()
	e := l.waitN(t, typ, name, n+1, within)[n]
	l.mu.Lock()
	l.seen[k] = n + 1
	l.mu.Unlock()
	return e.Event
}

// count returns how many events of type typ for name have arrived.
func (l *eventLog) count(typ autotls.EventType, name string) int {
	got, _ := l.matching(typ, name)
	return len(got)
}

// String lists the events, for failure messages.
func (l *eventLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, e := range l.all {
		fmt.Fprintf(&b, "\n  %s %s %s serial=%s err=%v", e.at.Format("15:04:05.000"), e.Type, e.Name, e.Serial, e.Err)
	}
	return b.String()
}

func serialHex(c *x509.Certificate) string { return hex.EncodeToString(c.SerialNumber.Bytes()) }

// served returns the serial of the certificate m serves for name.
func served(t *testing.T, m *autotls.Manager, name string) string {
	t.Helper()
	c, err := m.GetCertificate(hello(name))
	if err != nil {
		t.Fatalf("GetCertificate(%s): %v", name, err)
	}
	return serialHex(c.Leaf)
}

// loadOnly returns the value of the one key under prefix in store.
func loadOnly(t *testing.T, store storage.Storage, prefix string) []byte {
	t.Helper()
	keys, err := store.List(ctxT(t), prefix)
	if err != nil || len(keys) != 1 {
		t.Fatalf("List(%q) = %q, %v; want one key", prefix, keys, err)
	}
	b, err := store.Load(ctxT(t), keys[0])
	if err != nil {
		t.Fatalf("Load(%q): %v", keys[0], err)
	}
	return b
}

// storedCert returns the leaf and the account of the one certificate in
// store.
func storedCert(t *testing.T, store storage.Storage) (*x509.Certificate, string) {
	t.Helper()
	leaf, account, err := autotls.StoredLeafForTest(loadOnly(t, store, "certificates/"))
	if err != nil {
		t.Fatalf("stored certificate: %v", err)
	}
	return leaf, account
}

// storedAccount returns the URL of the one account in store.
func storedAccount(t *testing.T, store storage.Storage) string {
	t.Helper()
	var a struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal(loadOnly(t, store, "accounts/"), &a); err != nil || a.URL == "" {
		t.Fatalf("stored account: %q, %v", a.URL, err)
	}
	return a.URL
}

const ariPath = "/draft-ietf-acme-ari-03/renewalInfo"

// notFound answers like Pebble does for a certificate it does not know.
func notFound(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(http.StatusNotFound)
	w.Write([]byte(`{"type":"urn:ietf:params:acme:error:malformed","detail":"no renewal information (test)","status":404}`))
}

// noARI is a Wrap that answers every renewalInfo request 404, so that the
// Manager keeps its own schedule and the test knows when renewal is due.
func noARI(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, ariPath) {
			notFound(w)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// The CA loses every account (its database is replaced by a fresh one):
// the next renewal registers exactly one new account, stores it and
// succeeds, and a second Manager on the same storage uses the stored
// account without registering another.
func TestCAResetNewAccount(t *testing.T) {
	t.Parallel()
	// Renewal on the Manager's own schedule: 2 to 2.5 s after NotBefore for
	// a certificate of 6 s (5 s of validity, renewed with half left).
	e := newEnv(t, testpebble.Options{Profiles: map[string]time.Duration{"tiny": 6 * time.Second}, Wrap: noARI})
	store := storage.Dir(t.TempDir())
	ev := newEventLog()
	m1 := e.manager(t, store, func(m *autotls.Manager) {
		m.Issuers[0].Profile = "tiny"
		m.FailureBackoff = 200 * time.Millisecond
		m.OnEvent = ev.on
	})
	const name = "example.com"
	if err := m1.Manage(ctxT(t), name); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	first := served(t, m1, name)
	oldAccount := storedAccount(t, store)
	if err := e.ca.Reset(); err != nil {
		t.Fatal(err)
	}
	accounts := e.ca.Requests("newAccount")
	if accounts != 1 {
		t.Fatalf("%d newAccount requests before the reset, want 1", accounts)
	}

	renewed := ev.waitN(t, autotls.EventRenewed, name, 1, 30*time.Second)[0]
	if got := e.ca.Requests("newAccount") - accounts; got != 1 {
		t.Errorf("got %d newAccount requests after the CA reset, want 1; events: %s", got, ev)
	}
	if renewed.Serial == first {
		t.Fatalf("renewed serial %s, want a new certificate", renewed.Serial)
	}
	newAccount := storedAccount(t, store)
	if newAccount == oldAccount {
		t.Fatalf("stored account after the reset: got %s, want a new one", newAccount)
	}
	leaf, certAccount := storedCert(t, store)
	if serialHex(leaf) == first {
		t.Errorf("stored certificate: got the one from before the reset, want the renewed one")
	}
	if certAccount != newAccount {
		t.Errorf("stored certificate's account: got %s, want the new account %s", certAccount, newAccount)
	}
	if got := served(t, m1, name); got == first {
		t.Errorf("served serial %s after the renewal, want a new certificate", got)
	}

	// A second Manager on the same storage orders with the stored account.
	accounts, orders := e.ca.Requests("newAccount"), e.ca.Requests("newOrder")
	m2 := e.manager(t, store, func(m *autotls.Manager) { m.Issuers[0].Profile = "tiny" })
	if err := m2.Manage(ctxT(t), "www.example.org"); err != nil {
		t.Fatalf("second Manager: Manage: %v", err)
	}
	if got := e.ca.Requests("newAccount") - accounts; got != 0 {
		t.Errorf("second Manager: got %d newAccount requests, want 0 (the stored account)", got)
	}
	if got := e.ca.Requests("newOrder") - orders; got < 1 {
		t.Errorf("second Manager: got %d newOrder requests, want at least 1", got)
	}
	if got := storedAccount(t, store); got != newAccount {
		t.Errorf("stored account after the second Manager: got %s, want %s", got, newAccount)
	}
}

// ariSoon is a Wrap whose first renewalInfo answer suggests renewing in
// about two seconds (and asking again in an hour); later ones answer 404.
// It makes a renewal due at a time the test knows, early in a certificate's
// life.
func ariSoon() func(http.Handler) http.Handler {
	var answered atomic.Bool
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasPrefix(r.URL.Path, ariPath) {
				next.ServeHTTP(w, r)
				return
			}
			if answered.Swap(true) {
				notFound(w)
				return
			}
			start := time.Now().Add(2 * time.Second).UTC()
			body := fmt.Sprintf(`{"suggestedWindow":{"start":%q,"end":%q}}`,
				start.Format(time.RFC3339Nano), start.Add(100*time.Millisecond).Format(time.RFC3339Nano))
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "3600")
			w.Write([]byte(body))
		})
	}
}

// The CA refuses connections during a renewal, then comes back: the old
// certificate is served throughout, every failed attempt is reported with
// a later retry than the one before, and the renewal succeeds once the CA
// answers again.
func TestCADownRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{Profiles: map[string]time.Duration{"short": 30 * time.Second}, Wrap: ariSoon()})
	ev := newEventLog()
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.Issuers[0].Profile = "short"
		m.FailureBackoff = 200 * time.Millisecond
		m.OnEvent = ev.on
	})
	const name = "example.com"
	if err := m.Manage(ctxT(t), name); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	first, err := m.GetCertificate(hello(name))
	if err != nil {
		t.Fatal(err)
	}
	firstSerial := serialHex(first.Leaf)
	sched := ev.waitN(t, autotls.EventScheduled, name, 1, 30*time.Second)[0]
	if sched.Reason != autotls.ReasonARI || !sched.RenewAt.After(time.Now()) {
		t.Fatalf("renewal scheduled at %v by %q, want a time to come chosen by ARI", sched.RenewAt, sched.Reason)
	}
	if err := e.ca.SetDown(testpebble.Refuse); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.ca.SetDown(testpebble.Up) })

	// Clients keep handshaking; each must get a certificate valid at that
	// moment: the old one until the renewal, then the new one.
	stop := make(chan struct{})
	type result struct {
		serials []string // distinct serials in the order served
		calls   int
		bad     []string
	}
	results := make(chan result, 1)
	go func() {
		var r result
		defer func() { results <- r }()
		tick := time.NewTicker(5 * time.Millisecond) // the clients' pace
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			r.calls++
			c, err := m.GetCertificate(hello(name))
			now := time.Now()
			switch {
			case err != nil:
				r.bad = append(r.bad, fmt.Sprintf("%s: error %v", now.Format("15:04:05.000"), err))
				continue
			case !now.Before(c.Leaf.NotAfter):
				r.bad = append(r.bad, fmt.Sprintf("%s: served a certificate that expired at %v", now.Format("15:04:05.000"), c.Leaf.NotAfter))
			}
			if s := serialHex(c.Leaf); len(r.serials) == 0 || r.serials[len(r.serials)-1] != s {
				r.serials = append(r.serials, s)
			}
		}
	}()

	fails := ev.waitN(t, autotls.EventFailed, name, 3, 60*time.Second)
	for i, f := range fails {
		if !errors.Is(f.Err, syscall.ECONNREFUSED) {
			t.Errorf("failure %d: got %v, want an error matching ECONNREFUSED", i+1, f.Err)
		}
		if i == 0 {
			continue
		}
		prev := fails[i-1]
		if !f.RetryAt.After(prev.RetryAt) {
			t.Errorf("failure %d: retry at %v, want after the previous retry at %v", i+1, f.RetryAt, prev.RetryAt)
		}
		// The attempt that failed ran at the previous retry time or
		// after, and its backoff doubles the previous one (±10 %): the
		// gap between two retry times is at least that backoff, however
		// slowly the machine delivers the events.
		if gap, min := f.RetryAt.Sub(prev.RetryAt), 9*(200*time.Millisecond<<i)/10; gap < min {
			t.Errorf("failure %d: retry %v after the previous one, want at least %v (a doubled backoff)", i+1, gap, min)
		}
	}
	if n := ev.count(autotls.EventRenewed, name); n != 0 {
		t.Fatalf("%d renewals while the CA refused connections", n)
	}
	if got := served(t, m, name); got != firstSerial {
		t.Fatalf("while the CA is down: served serial %s, want the old %s", got, firstSerial)
	}

	if err := e.ca.SetDown(testpebble.Up); err != nil {
		t.Fatal(err)
	}
	renewed := ev.waitN(t, autotls.EventRenewed, name, 1, 60*time.Second)[0]
	// The new certificate is in the cache before the event is emitted.
	if got := served(t, m, name); got != renewed.Serial {
		t.Errorf("after the renewal: served serial %s, want the renewed %s", got, renewed.Serial)
	}
	close(stop)
	r := <-results
	for _, b := range r.bad {
		t.Error(b)
	}
	want := []string{firstSerial, renewed.Serial}
	if len(r.serials) > 2 || len(r.serials) == 0 || r.serials[0] != firstSerial || (len(r.serials) == 2 && r.serials[1] != renewed.Serial) {
		t.Errorf("served serials in order: got %q, want %q (or only the first)", r.serials, want)
	}
	t.Logf("%d GetCertificate calls, %d failed attempts reported", r.calls, ev.count(autotls.EventFailed, name))
}

// fleetDSN returns the DSN of the test PostgreSQL server, or skips.
func fleetDSN(t testing.TB) string {
	t.Helper()
	return testenv.Postgres(t)
}

// fleetPrefix returns a fresh table prefix whose tables are dropped when
// the test ends (after the stores using them are closed).
func fleetPrefix(t testing.TB, dsn string) string {
	t.Helper()
	b := make([]byte, 5)
	rand.Read(b)
	prefix := "fleet" + hex.EncodeToString(b) + "_"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := postgres.Drop(ctx, postgres.Config{DSN: dsn, TablePrefix: prefix}); err != nil {
			t.Errorf("clean-up: %v", err)
		}
	})
	return prefix
}

// withPoolSize returns dsn with pool_max_conns set to n, in the URL or the
// key=value form.
func withPoolSize(dsn string, n int) string {
	param := fmt.Sprintf("pool_max_conns=%d", n)
	switch {
	case !strings.Contains(dsn, "://"):
		return dsn + " " + param
	case strings.Contains(dsn, "?"):
		return dsn + "&" + param
	}
	return dsn + "?" + param
}

// openPostgres opens one node's connection to the shared store.
func openPostgres(t testing.TB, cfg postgres.Config) *postgres.Storage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := postgres.New(ctx, cfg)
	if err != nil {
		t.Fatalf("postgres.New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Three Managers share PostgreSQL and are given the same 50 names at once:
// the CA sees exactly 50 orders, and every Manager serves all 50 names with
// the same certificates (the others load what one ordered).
func TestFleetPostgresFiftyNames(t *testing.T) {
	dsn := fleetDSN(t)
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	prefix := fleetPrefix(t, dsn)
	const nodes, count = 3, 50
	names := make([]string, count)
	for i := range names {
		names[i] = fmt.Sprintf("fleet%02d.example.com", i)
	}
	managers := make([]*autotls.Manager, nodes)
	logs := make([]*eventLog, nodes)
	for i := range managers {
		store := openPostgres(t, postgres.Config{DSN: withPoolSize(dsn, 8), TablePrefix: prefix, LockPollInterval: 20 * time.Millisecond})
		logs[i] = newEventLog()
		managers[i] = e.manager(t, store, func(m *autotls.Manager) {
			m.MaxBackgroundOrders = 8
			m.OnEvent = logs[i].on
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := make(chan struct{})
	errs := make(chan error, nodes)
	for _, m := range managers {
		go func() {
			<-start
			errs <- m.Manage(ctx, names...)
		}()
	}
	close(start)
	for i := range managers {
		if err := <-errs; err != nil {
			t.Errorf("Manage on one node (%d of %d): %v", i+1, nodes, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	if got := e.ca.Requests("newOrder"); got != count {
		t.Errorf("got %d newOrder requests at the CA for %d names on %d Managers, want %d", got, count, nodes, count)
	}
	if got := e.ca.Requests("newAccount"); got != 1 {
		t.Errorf("got %d newAccount requests, want 1 (the fleet shares the account)", got)
	}
	obtained := 0
	for i, l := range logs {
		for _, name := range names {
			o, ld := l.count(autotls.EventObtained, name), l.count(autotls.EventLoaded, name)
			obtained += o
			if o > 1 || o+ld == 0 {
				t.Errorf("Manager %d, %s: %d obtained and %d loaded events, want it obtained once or loaded", i+1, name, o, ld)
			}
		}
	}
	if obtained != count {
		t.Errorf("got %d obtained events across the fleet, want %d", obtained, count)
	}
	for _, name := range names {
		want := served(t, managers[0], name)
		for i, m := range managers[1:] {
			if got := served(t, m, name); got != want {
				t.Errorf("%s: Manager %d serves serial %s, Manager 1 serves %s; want the same certificate", name, i+2, got, want)
			}
		}
	}
}

// stall stops the first operation that reaches it until released, and
// reports when one has reached it.
type stall struct {
	armed   atomic.Bool
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func newStall() *stall {
	s := &stall{reached: make(chan struct{}), release: make(chan struct{})}
	s.armed.Store(true)
	return s
}

// take reports whether the caller is the one operation stopped; that
// caller must then wait on release.
func (s *stall) take() bool {
	if s == nil || !s.armed.CompareAndSwap(true, false) {
		return false
	}
	close(s.reached)
	return true
}

func (s *stall) free() { s.once.Do(func() { close(s.release) }) }

func (s *stall) waitReached(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-s.reached:
	case <-time.After(within):
		t.Fatalf("the stalled node did not reach the stall within %v", within)
	}
}

// stallingStore is one node's PostgreSQL store whose Store of a
// certificate, while its stall is armed, waits until released and then
// writes without looking at its context again: a process frozen between
// its last check of the context and the write, which reaches the database
// after the lease was taken over. Only the fence can stop it.
type stallingStore struct {
	*postgres.Storage
	stall  *stall
	stored chan error // the result of the stalled Store
}

func (s *stallingStore) Store(ctx context.Context, key string, value []byte) error {
	if !strings.HasPrefix(key, "certificates/") || !s.stall.take() {
		return s.Storage.Store(ctx, key, value)
	}
	<-s.stall.release
	err := s.Storage.Store(context.WithoutCancel(ctx), key, value)
	s.stored <- err
	return err
}

// stallFinalize is a Wrap that stops the first finalize request until it
// is released or its client gives up.
func stallFinalize(s *stall) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/finalize-order/") && s.take() {
				select {
				case <-s.release:
				case <-r.Context().Done():
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// expireIssueLeases ends every lease on an issue lock, as the lease of a
// node stalled past its TTL ends, and returns how many there were.
func expireIssueLeases(t *testing.T, dsn, prefix string) int64 {
	t.Helper()
	c, err := pgx.Connect(ctxT(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	tag, err := c.Exec(ctxT(t), "UPDATE "+pgx.Identifier{prefix + "locks"}.Sanitize()+
		" SET owner = 'expired while stalled', expires = now() WHERE name LIKE 'issue/%'")
	if err != nil {
		t.Fatal(err)
	}
	return tag.RowsAffected()
}

// One node of a PostgreSQL fleet stalls mid-order past its lease; another
// takes over, obtains and stores its certificate. The stalled node cannot
// overwrite it: stalled before finalize, its order stops when the lease is
// lost (and it then loads the other's certificate); stalled in its Store,
// the write is fenced. Storage keeps the second node's certificate, which
// that node serves and a node started afterwards loads.
func TestFleetStalledLease(t *testing.T) {
	dsn := fleetDSN(t)
	t.Parallel()
	for _, tc := range []struct {
		name    string
		atStore bool // stall in the Store, else before the CA's finalize
	}{
		{name: "before finalize"},
		{name: "in Store", atStore: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := newStall()
			opts := testpebble.Options{}
			if !tc.atStore {
				opts.Wrap = stallFinalize(st)
			}
			e := newEnv(t, opts)
			prefix := fleetPrefix(t, dsn)
			cfg := postgres.Config{DSN: dsn, TablePrefix: prefix, LockTTL: 2 * time.Second, LockPollInterval: 20 * time.Millisecond}
			storeA := &stallingStore{Storage: openPostgres(t, cfg), stored: make(chan error, 1)}
			if tc.atStore {
				storeA.stall = st
			}
			evA, evB, evC := newEventLog(), newEventLog(), newEventLog()
			mod := func(ev *eventLog) func(*autotls.Manager) {
				return func(m *autotls.Manager) {
					m.FailureBackoff = 200 * time.Millisecond
					m.OnEvent = ev.on
				}
			}
			a := e.manager(t, storeA, mod(evA))
			b := e.manager(t, openPostgres(t, cfg), mod(evB))
			t.Cleanup(st.free) // before the Managers close: runs first

			const name = "stalled.example.com"
			manageA := make(chan error, 1)
			go func() { manageA <- a.Manage(ctxT(t), name) }()
			st.waitReached(t, 30*time.Second)
			if n := expireIssueLeases(t, dsn, prefix); n != 1 {
				t.Fatalf("expired %d issue leases, want the stalled node's one", n)
			}

			if err := b.Manage(ctxT(t), name); err != nil {
				t.Fatalf("second node: Manage: %v", err)
			}
			if n := evB.count(autotls.EventObtained, name); n != 1 {
				t.Fatalf("second node: %d obtained events, want 1; events: %s", n, evB)
			}
			bSerial := served(t, b, name)

			if tc.atStore {
				st.free()
				select {
				case err := <-storeA.stored:
					if !errors.Is(err, storage.ErrLockLost) {
						t.Errorf("the stalled node's Store: got %v, want it fenced (ErrLockLost)", err)
					}
				case <-time.After(30 * time.Second):
					t.Fatal("the stalled node's Store never returned")
				}
				if err := <-manageA; err != nil {
					t.Logf("stalled node: Manage: %v", err)
				}
				// What the stalled node serves is its own affair (storage
				// holds the other's certificate); log it.
				t.Logf("stalled node serves serial %s; the second node %s; stalled node's events: %s", served(t, a, name), bSerial, evA)
			} else {
				f := evA.waitN(t, autotls.EventFailed, name, 1, 30*time.Second)[0]
				if !errors.Is(f.Err, storage.ErrLockLost) {
					t.Errorf("stalled node's order: got %v, want it stopped with ErrLockLost", f.Err)
				}
				if err := <-manageA; !errors.Is(err, storage.ErrLockLost) {
					t.Errorf("stalled node: Manage: got %v, want ErrLockLost", err)
				}
				st.free()
				// Through the watch or its retry after the backoff, it
				// loads the other's certificate.
				evA.waitN(t, autotls.EventLoaded, name, 1, 30*time.Second)
				if got := served(t, a, name); got != bSerial {
					t.Errorf("stalled node after its retry: serves %s, want the second node's %s", got, bSerial)
				}
			}

			leaf, _ := storedCert(t, storeA.Storage)
			if got := serialHex(leaf); got != bSerial {
				t.Errorf("stored certificate: serial %s, want the second node's %s", got, bSerial)
			}
			if got := served(t, b, name); got != bSerial {
				t.Errorf("second node: serves %s, want its own %s", got, bSerial)
			}
			orders := e.ca.Requests("newOrder")
			if orders != 2 {
				t.Errorf("got %d newOrder requests, want 2 (the stalled node's and the second node's)", orders)
			}
			c := e.manager(t, openPostgres(t, cfg), mod(evC))
			if err := c.Manage(ctxT(t), name); err != nil {
				t.Fatalf("third node: Manage: %v", err)
			}
			if got := served(t, c, name); got != bSerial {
				t.Errorf("third node: serves %s, want the stored %s", got, bSerial)
			}
			if got := e.ca.Requests("newOrder"); got != orders {
				t.Errorf("third node: %d newOrder requests, want 0", got-orders)
			}
		})
	}
}

// ariFilter is a transport that fails every renewalInfo request, for a
// Manager that must never learn the CA's renewal window.
type ariFilter struct{ http.RoundTripper }

func (f ariFilter) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasPrefix(r.URL.Path, ariPath) {
		return nil, errors.New("renewalInfo blocked by the test")
	}
	return f.RoundTripper.RoundTrip(r)
}

// retryAfterOne is a Wrap that makes every renewalInfo answer say "ask
// again in a second".
func retryAfterOne(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, ariPath) {
			w = &retryAfterWriter{ResponseWriter: w}
		}
		next.ServeHTTP(w, r)
	})
}

type retryAfterWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *retryAfterWriter) WriteHeader(code int) {
	if !w.wrote {
		w.wrote = true
		w.Header().Set("Retry-After", "1")
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *retryAfterWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// Two Managers on one folder (FileStorage, which watches by polling): one
// renews after the CA revoked the certificate, and the other, which has no
// reason of its own to look at storage for weeks, picks the new
// certificate up within a few watch intervals and orders nothing.
func TestFleetPickup(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{Wrap: retryAfterOne})
	dir := t.TempDir()
	watching := func() storage.Storage { return &storage.FileStorage{Path: dir, WatchInterval: 50 * time.Millisecond} }
	const name = "example.com"

	// The renewing node polls ARI every second.
	evA := newEventLog()
	a := e.manager(t, watching(), func(m *autotls.Manager) { m.OnEvent = evA.on })
	autotls.SetMinARIPollForTest(a, 100*time.Millisecond)
	if err := a.Manage(ctxT(t), name); err != nil {
		t.Fatalf("renewing node: Manage: %v", err)
	}
	first, err := a.GetCertificate(hello(name))
	if err != nil {
		t.Fatal(err)
	}
	// The watching node never gets renewal information: its certificate
	// is due in weeks, and only a change in storage can tell it more.
	evB := newEventLog()
	var logsB syncBuffer
	b := e.manager(t, watching(), func(m *autotls.Manager) {
		m.HTTPClient = &http.Client{Transport: ariFilter{e.ca.HTTPClient().Transport}, Timeout: 30 * time.Second}
		m.OnEvent = evB.on
		m.Logger = slog.New(slog.NewTextHandler(&logsB, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	if err := b.Manage(ctxT(t), name); err != nil {
		t.Fatalf("watching node: Manage: %v", err)
	}
	if got := served(t, b, name); got != serialHex(first.Leaf) {
		t.Fatalf("watching node serves %s, want the stored %s", got, serialHex(first.Leaf))
	}
	orders := e.ca.Requests("newOrder")

	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("renewing node's events: %s\nwatching node's events: %s\nwatching node's logs:\n%s", evA, evB, logsB.String())
		}
	})
	// Validity has whole seconds: a replacement issued in the first
	// certificate's second expires with it, and must still count as newer.
	if err := e.ca.Revoke(first.Leaf, acme.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	renewed := evA.waitN(t, autotls.EventReplaced, name, 1, 30*time.Second)[0]
	// The watching node loads it: the loaded events are its first (at
	// Manage) and the one for the renewed certificate.
	loaded := evB.waitN(t, autotls.EventLoaded, name, 2, 10*time.Second)[1]
	if loaded.Serial != renewed.Serial {
		t.Fatalf("watching node loaded %s, want the renewed %s", loaded.Serial, renewed.Serial)
	}
	if got := served(t, b, name); got != renewed.Serial {
		t.Errorf("watching node serves %s, want the renewed %s", got, renewed.Serial)
	}
	if got := e.ca.Requests("newOrder") - orders; got != 1 {
		t.Errorf("got %d newOrder requests for the renewal, want 1 (the renewing node's)", got)
	}
	if n := evB.count(autotls.EventRenewed, name) + evB.count(autotls.EventReplaced, name) + evB.count(autotls.EventObtained, name); n != 0 {
		t.Errorf("the watching node ordered %d certificates, want 0", n)
	}
}
