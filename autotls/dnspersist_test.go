package autotls_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libdns/libdns"
	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/solvers"
	"github.com/tlsmint/tlsmint/solvers/dns01test"
	"github.com/tlsmint/tlsmint/storage"
)

// pebbleIssuer is the issuer domain name the test CA's dns-persist-01
// challenges offer, and its CAA identity.
const pebbleIssuer = "pebble.letsencrypt.org"

// persistSolver returns a dns-persist-01 solver over the CA's mock DNS;
// provider nil makes it read-only.
func persistSolver(t testing.TB, ca *testpebble.CA, p solvers.DNSProvider) *solvers.DNSPersist01 {
	return &solvers.DNSPersist01{
		Provider:           p,
		Resolvers:          []string{ca.DNS().Addr()},
		NameserverPort:     dnsPort(t, ca.DNS().Addr()),
		PropagationTimeout: 30 * time.Second,
		PollInterval:       20 * time.Millisecond,
	}
}

// storedAccountURL returns the URL of the one account in store.
func storedAccountURL(t *testing.T, store storage.Storage) string {
	t.Helper()
	keys, err := store.List(ctxT(t), "accounts/")
	if err != nil || len(keys) != 1 {
		t.Fatalf("stored accounts: %q, %v; want one", keys, err)
	}
	b, err := store.Load(ctxT(t), keys[0])
	if err != nil {
		t.Fatal(err)
	}
	var a struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal(b, &a); err != nil || a.URL == "" {
		t.Fatalf("stored account %s: %v", keys[0], err)
	}
	return a.URL
}

// writeCounter counts the records a provider is asked to append.
type writeCounter struct {
	solvers.DNSProvider
	appends, deletes atomic.Int32
}

func (p *writeCounter) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	p.appends.Add(int32(len(recs)))
	return p.DNSProvider.AppendRecords(ctx, zone, recs)
}

func (p *writeCounter) DeleteRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	p.deletes.Add(int32(len(recs)))
	return p.DNSProvider.DeleteRecords(ctx, zone, recs)
}

// readOnlyPersist returns a Manager of a test CA whose DNS serves
// example.com, with a read-only dns-persist-01 as its only challenge,
// checking for the record every 20 ms, its events in the log and its
// storage in memory; mod, when not nil, changes it further.
func readOnlyPersist(t *testing.T, mod func(*autotls.Manager)) (*env, *autotls.Manager, *eventLog, storage.Storage) {
	t.Helper()
	e := newEnv(t, testpebble.Options{})
	e.ca.DNS().AddZone("example.com")
	log := newEventLog()
	store := storage.NewMemory()
	m := e.manager(t, store, func(m *autotls.Manager) {
		m.DNSPersist01 = persistSolver(t, e.ca, nil)
		m.DNSRecordCheckInterval = 20 * time.Millisecond
		m.DisableHTTP01, m.DisableTLSALPN01 = true, true
		m.OnEvent = log.on
		if mod != nil {
			mod(m)
		}
	})
	return e, m, log, store
}

// TestDNSPersistReadOnly: a Manager whose only challenge is a read-only
// dns-persist-01 says at start-up which record to create, per name (an
// event and Certificates), places no order until it exists, and obtains
// both certificates as soon as the operator publishes it — one record,
// with policy=wildcard, for the name and its wildcard. The record checks
// run on the real clock (DNSRecordCheckInterval, kept short here): they
// are DNS look-ups, paced by the network's time, not the lifecycle's.
func TestDNSPersistReadOnly(t *testing.T) {
	t.Parallel()
	e, m, log, store := readOnlyPersist(t, func(m *autotls.Manager) {
		m.FailureBackoff = time.Hour // only the record's appearance may retry
	})
	if err := m.Validate(); err != nil {
		t.Fatalf("Validate with only dns-persist-01: %v", err)
	}
	err := m.Manage(ctxT(t), "example.com", "*.example.com")
	if !errors.Is(err, solvers.ErrPersistRecordMissing) {
		t.Fatalf("Manage without the record: got %v, want an error matching ErrPersistRecordMissing", err)
	}
	if n := e.ca.Requests("newOrder") + e.ca.Requests("challenge"); n != 0 {
		t.Errorf("%d orders and challenge POSTs before the record exists, want none (%v)", n, e.ca.RequestCounts())
	}
	want := record.DNS{
		Name: "_validation-persist.example.com", Type: "TXT",
		Value:  pebbleIssuer + "; accounturi=" + storedAccountURL(t, store) + "; policy=wildcard",
		Issuer: e.ca.DirectoryURL(),
	}
	want.ZoneFileValue = `"` + want.Value + `"`
	for _, name := range []string{"example.com", "*.example.com"} {
		ev := log.next(t, autotls.EventDNSRecordMissing, name, 10*time.Second)
		if r := ev.DNSRecord; r == nil || r.Name != want.Name || r.Value != want.Value || r.ZoneFileValue != want.ZoneFileValue || r.Issuer != want.Issuer || r.Reason == "" {
			t.Errorf("%s: event record %+v, want %+v with a reason", name, r, want)
		}
		if !strings.Contains(err.Error(), want.String()) {
			t.Errorf("Manage's error %q does not hold the zone file line %s", err, want.String())
		}
	}
	infos, err := m.Certificates(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 {
		t.Fatalf("Certificates: %d entries, want 2", len(infos))
	}
	for _, info := range infos {
		if len(info.DNSRecords) != 1 || info.DNSRecords[0].Value != want.Value || info.DNSRecords[0].Name != want.Name {
			t.Errorf("Certificates[%s].DNSRecords = %+v, want [%+v]", info.Name, info.DNSRecords, want)
		}
		if !info.Managed || info.Serial != "" || !strings.Contains(info.LastError, want.Value) {
			t.Errorf("Certificates[%s] = managed %v, serial %q, last error %q; want managed, no certificate, the instruction", info.Name, info.Managed, info.Serial, info.LastError)
		}
	}
	// Still nothing after a few looks at DNS.
	time.Sleep(100 * time.Millisecond) // lets the watcher look several times; nothing may happen
	if n := log.count(autotls.EventDNSRecordMissing, "example.com"); n != 1 {
		t.Errorf("%d missing events for example.com, want 1 (not one per look)", n)
	}

	// The operator publishes the record.
	e.ca.DNS().AddTXT(want.Name, want.Value)
	for _, name := range []string{"example.com", "*.example.com"} {
		log.next(t, autotls.EventDNSRecordFound, name, 10*time.Second)
		log.next(t, autotls.EventObtained, name, 30*time.Second)
	}
	addr := serve(t, m)
	for _, sni := range []string{"example.com", "a.example.com"} {
		if _, err := e.handshake(ctxT(t), addr, sni); err != nil {
			t.Errorf("handshake for %s: %v", sni, err)
		}
	}
	if n := e.ca.Requests("challenge"); n != 2 {
		t.Errorf("%d challenge POSTs, want 2 (one per name)", n)
	}
	infos, _ = m.Certificates(ctxT(t))
	for _, info := range infos {
		if len(info.DNSRecords) != 0 || info.Serial == "" {
			t.Errorf("Certificates[%s] after issuance: records %+v, serial %q; want none and a certificate", info.Name, info.DNSRecords, info.Serial)
		}
	}
}

// TestDNSPersistProvider: with a provider, the record is created once;
// the renewal makes no DNS write; a wildcard's record (policy=wildcard)
// also serves its base name.
func TestDNSPersistProvider(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	e.ca.DNS().AddZone("example.com")
	prov := &writeCounter{DNSProvider: &dns01test.Provider{Server: e.ca.DNS()}}
	log := newEventLog()
	until := time.Now().Add(10 * 24 * time.Hour).Truncate(time.Second)
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.Hosts = nil
		m.DNSPersist01 = persistSolver(t, e.ca, prov)
		m.DNSPersist01.PersistUntil = until // within the 30-day warning
		m.OnEvent = log.on
		// tls-alpn-01 stays enabled: dns-persist-01 must be chosen first.
	})
	if err := m.Manage(ctxT(t), "p.example.com"); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	if err := autotls.RenewForTest(m, "p.example.com"); err != nil {
		t.Fatalf("renewal: %v", err)
	}
	if err := m.Manage(ctxT(t), "*.w.example.com"); err != nil {
		t.Fatalf("Manage wildcard: %v", err)
	}
	if err := m.Manage(ctxT(t), "w.example.com"); err != nil {
		t.Fatalf("Manage the wildcard's base: %v", err)
	}
	if a, d := prov.appends.Load(), prov.deletes.Load(); a != 2 || d != 0 {
		t.Errorf("%d records appended, %d deleted; want 2 (one per base name), 0", a, d)
	}
	if got := e.ca.DNS().TXT("_validation-persist.w.example.com"); len(got) != 1 || !strings.Contains(got[0], "; policy=wildcard") {
		t.Errorf("wildcard record %q, want one with policy=wildcard", got)
	}
	if n := e.ca.Requests("challenge"); n != 4 {
		t.Errorf("%d challenge POSTs, want 4 (issuance, renewal, wildcard, base)", n)
	}
	// The records end in ten days: said once per name, ahead of time.
	for _, name := range []string{"p.example.com", "*.w.example.com", "w.example.com"} {
		if n := log.count(autotls.EventDNSRecordEnding, name); n != 1 {
			t.Errorf("%s: %d ending events, want 1", name, n)
			continue
		}
		ev := log.next(t, autotls.EventDNSRecordEnding, name, time.Second)
		if r := ev.DNSRecord; r == nil || !r.PersistUntil.Equal(until) || !strings.Contains(r.Value, "persistUntil="+strconv.FormatInt(until.Unix(), 10)) {
			t.Errorf("%s: ending record %+v, want persistUntil %v", name, ev.DNSRecord, until)
		}
	}
}

// alpnSwitch serves tls-alpn-01 for m on ln (the CA's TLS port) while on
// is set.
func alpnSwitch(t *testing.T, ln net.Listener, m *autotls.Manager, on *atomic.Bool) {
	t.Helper()
	tl := tls.NewListener(ln, &tls.Config{NextProtos: []string{"acme-tls/1"}, GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if !on.Load() {
			return nil, errors.New("tls-alpn-01 is off")
		}
		return m.GetCertificate(h)
	}})
	go testpebble.ServeHandshakes(tl)
	t.Cleanup(func() { tl.Close() })
}

// TestDNSPersistReadOnlyFallback: with other challenge types enabled, a
// missing record does not stop issuance (tls-alpn-01 is used, and the
// record asked for); once published, the fresh certificate is not ordered
// again, and the renewal validates with dns-persist-01 alone.
func TestDNSPersistReadOnlyFallback(t *testing.T) {
	t.Parallel()
	opts := testpebble.Options{}
	_, tlsLn := bindChallengePorts(t, &opts)
	ca, err := testpebble.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ca.Close() })
	ca.DNS().AddZone("example.com")
	log := newEventLog()
	store := storage.NewMemory()
	m := testsetup.Manager(t, ca, store, func(m *autotls.Manager) {
		m.Hosts = nil
		m.DNSPersist01 = persistSolver(t, ca, nil)
		m.DNSRecordCheckInterval = 20 * time.Millisecond
		m.OnEvent = log.on
	})
	var alpn atomic.Bool
	alpn.Store(true)
	alpnSwitch(t, tlsLn, m, &alpn)
	if err := m.Manage(ctxT(t), "fb.example.com"); err != nil {
		t.Fatalf("Manage with tls-alpn-01 to fall back on: %v", err)
	}
	ev := log.next(t, autotls.EventDNSRecordMissing, "fb.example.com", 10*time.Second)
	alpn.Store(false)
	ca.DNS().AddTXT(ev.DNSRecord.Name, ev.DNSRecord.Value)
	log.next(t, autotls.EventDNSRecordFound, "fb.example.com", 10*time.Second)
	// Whatever the watcher would do, it does right after the event; this
	// check can only miss a late order, never see one that is not there.
	time.Sleep(200 * time.Millisecond)
	if n := ca.Requests("newOrder"); n != 1 {
		t.Errorf("%d orders after the record appeared for a fresh certificate, want 1", n)
	}
	if err := autotls.RenewForTest(m, "fb.example.com"); err != nil {
		t.Fatalf("renewal with tls-alpn-01 off: %v (events: %s)", err, log)
	}
	if n := ca.Requests("newOrder"); n != 2 {
		t.Errorf("%d orders after the renewal, want 2", n)
	}
	if !strings.Contains(ev.DNSRecord.Value, storedAccountURL(t, store)) || strings.Contains(ev.DNSRecord.Value, "policy=") {
		t.Errorf("record %q, want the account and no policy", ev.DNSRecord.Value)
	}
}

// TestDNSPersistRecordEnding: a published record whose persistUntil is
// near is used, and reported once, with the record to publish instead.
func TestDNSPersistRecordEnding(t *testing.T) {
	t.Parallel()
	e, m, log, store := readOnlyPersist(t, nil)
	// A first attempt registers the account and finds no record; then a
	// record that ends in ten days is published.
	if err := m.Manage(ctxT(t), "end.example.com"); !errors.Is(err, solvers.ErrPersistRecordMissing) {
		t.Fatalf("Manage without the record: %v", err)
	}
	until := time.Now().Add(10 * 24 * time.Hour).Truncate(time.Second)
	acct := storedAccountURL(t, store)
	e.ca.DNS().AddTXT("_validation-persist.end.example.com", pebbleIssuer+"; accounturi="+acct+"; persistUntil="+strconv.FormatInt(until.Unix(), 10))
	log.next(t, autotls.EventDNSRecordFound, "end.example.com", 40*time.Second)
	log.next(t, autotls.EventObtained, "end.example.com", 30*time.Second)
	ev := log.next(t, autotls.EventDNSRecordEnding, "end.example.com", 10*time.Second)
	if r := ev.DNSRecord; r == nil || !r.PersistUntil.Equal(until) || r.Value != pebbleIssuer+"; accounturi="+acct {
		t.Errorf("ending event record %+v, want persistUntil %v and the record without it", ev.DNSRecord, until)
	}
	infos, _ := m.Certificates(ctxT(t))
	if len(infos) != 1 || len(infos[0].DNSRecords) != 1 || !infos[0].DNSRecords[0].PersistUntil.Equal(until) {
		t.Errorf("Certificates: %+v, want the ending record listed", infos)
	}
	if err := autotls.RenewForTest(m, "end.example.com"); err != nil {
		t.Fatalf("renewal: %v", err)
	}
	if n := log.count(autotls.EventDNSRecordEnding, "end.example.com"); n != 1 {
		t.Errorf("%d ending events, want 1", n)
	}
}

// nameRecorder records the names of the records a provider appends.
type nameRecorder struct {
	solvers.DNSProvider
	mu    sync.Mutex
	names []string
}

func (p *nameRecorder) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	p.mu.Lock()
	for _, r := range recs {
		p.names = append(p.names, libdns.AbsoluteName(r.RR().Name, zone))
	}
	p.mu.Unlock()
	return p.DNSProvider.AppendRecords(ctx, zone, recs)
}

// TestPreferDNSAccount01: the dns-01 solver answers dns-account-01, under
// the account's label, when the CA offers it.
func TestPreferDNSAccount01(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	e.ca.DNS().AddZone("example.com")
	prov := &nameRecorder{DNSProvider: &dns01test.Provider{Server: e.ca.DNS()}}
	store := storage.NewMemory()
	m := e.manager(t, store, func(m *autotls.Manager) {
		m.DNS01 = &solvers.DNS01{Provider: prov, Resolvers: []string{e.ca.DNS().Addr()}, NameserverPort: dnsPort(t, e.ca.DNS().Addr()), PollInterval: 20 * time.Millisecond}
		m.PreferDNSAccount01 = true
	})
	if err := m.Manage(ctxT(t), "*.example.com"); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	want := "_" + acme.DNSAccountLabel(storedAccountURL(t, store)) + "._acme-challenge.example.com."
	prov.mu.Lock()
	defer prov.mu.Unlock()
	if len(prov.names) != 1 || prov.names[0] != want {
		t.Errorf("records appended at %q, want [%s]", prov.names, want)
	}
}
