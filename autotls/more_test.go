package autotls_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libdns/libdns"
	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testenv"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/solvers"
	"github.com/tlsmint/tlsmint/storage"
	"github.com/tlsmint/tlsmint/storage/postgres"
)

func TestSharedPostgresStorageOneOrder(t *testing.T) {
	dsn := testenv.Postgres(t)
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	// Two independent connections to one database, as two servers would have.
	prefix := "autotls_" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "_")[:20] + "_"
	open := func() storage.Storage {
		s, err := postgres.New(ctxT(t), postgres.Config{DSN: dsn, TablePrefix: prefix})
		if err != nil {
			t.Fatalf("postgres.New: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	s1, s2 := open(), open()
	// Start clean: this test may have run before on the same database.
	keys, _ := s1.List(ctxT(t), "")
	for _, k := range keys {
		s1.Delete(ctxT(t), k)
	}
	testSharedStorage(t, e, s1, s2)
}

func TestTLSALPN01Only(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	m := e.manager(t, nil, func(m *autotls.Manager) { m.DisableHTTP01 = true })
	addr := serve(t, m)
	if _, err := e.handshake(ctxT(t), addr, "example.com"); err != nil {
		t.Fatal(err)
	}
	if got := e.ca.Requests("newOrder"); got != 1 {
		t.Fatalf("%d orders", got)
	}
}

func TestHTTPHandler(t *testing.T) {
	t.Parallel()
	m := &autotls.Manager{Storage: storage.NewMemory(), Hosts: autotls.HostWhitelist("example.com"), AcceptTOS: true}
	defer m.Close()
	h := m.HTTPHandler(nil)
	cases := []struct {
		method, host, target string
		want                 int
		location             string
	}{
		{"GET", "example.com", "/a?b=c", http.StatusFound, "https://example.com/a?b=c"},
		{"HEAD", "Example.COM:80", "/", http.StatusFound, "https://example.com/"},
		{"GET", "[::1]:80", "/x", http.StatusFound, "https://[::1]/x"},
		{"POST", "example.com", "/form", http.StatusBadRequest, ""},
		{"GET", "bad/host", "/", http.StatusBadRequest, ""},
		{"GET", "example.com", "/.well-known/acme-challenge/unknowntoken", http.StatusNotFound, ""},
	}
	for _, tc := range cases {
		r := httptest.NewRequest(tc.method, "http://"+tc.host+tc.target, nil)
		r.Host = tc.host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want || w.Header().Get("Location") != tc.location {
			t.Errorf("%s %s%s: %d %q, want %d %q", tc.method, tc.host, tc.target, w.Code, w.Header().Get("Location"), tc.want, tc.location)
		}
	}
	// Request targets that are not paths never change the redirect's
	// host; an address in brackets is a URL host only for IPv6.
	for _, tc := range []struct{ host, target, location string }{
		{"example.com", "http:@evil.test", "https://example.com/"},
		{"example.com", "http:evil.test", "https://example.com/"},
		{"example.com", "*", "https://example.com/"},
		{"example.com", "//evil.test/x", "https://example.com//evil.test/x"},
		{"[192.0.2.1]", "/x", "https://192.0.2.1/x"},
		{"[::ffff:192.0.2.1]:80", "/x", "https://192.0.2.1/x"},
		{"[2001:DB8::1]", "/x", "https://[2001:db8::1]/x"},
	} {
		r := httptest.NewRequest("GET", tc.target, nil)
		r.Host = tc.host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusFound || w.Header().Get("Location") != tc.location {
			t.Errorf("GET %s (Host %s): %d %q, want 302 %q", tc.target, tc.host, w.Code, w.Header().Get("Location"), tc.location)
		}
	}
	// A fallback receives everything but challenges.
	var got string
	h = m.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.URL.Path }))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "http://example.com/app", nil))
	if got != "/app" {
		t.Fatalf("fallback got %q", got)
	}
}

func TestListenErrorsAtOnce(t *testing.T) {
	t.Parallel()
	busy := testsetup.Listen(t, "127.0.0.1:0")
	m := &autotls.Manager{Storage: storage.NewMemory(), AcceptTOS: true}
	defer m.Close()
	if _, err := m.Listen("tcp", busy.Addr().String()); err == nil {
		t.Fatal("Listen on a busy address succeeded")
	}
	if _, err := autotls.NewListener(); err == nil {
		t.Fatal("NewListener without domains succeeded")
	}
	if _, err := autotls.NewListener("bad/name"); !errors.Is(err, autotls.ErrInvalidName) {
		t.Fatalf("NewListener(bad/name): %v", err)
	}
}

// syncBuffer is testsetup.Buffer, under the name the tests use.
type syncBuffer = testsetup.Buffer

// secretForms are the ways a MAC key could show up in text.
func secretForms(mac []byte) []string {
	return []string{
		string(mac),
		base64.RawURLEncoding.EncodeToString(mac),
		base64.URLEncoding.EncodeToString(mac),
		base64.StdEncoding.EncodeToString(mac),
		hex.EncodeToString(mac),
		fmt.Sprint(mac), // as a byte slice: [97 32 ...]
	}
}

// The EAB MAC key and the keys never reach logs (JSON and text handlers at
// Debug, the acme client's request logs included) or events, through
// registration, issuance, a failed validation and a refused EAB key; nor
// does printing or marshalling the binding show it.
func TestNoSecretsInLogsOrEvents(t *testing.T) {
	t.Parallel()
	mac := []byte("a very secret EAB MAC key, 32 bytes long!")
	wrong := []byte("another secret key that the CA does not know")
	e := newEnv(t, testpebble.Options{RequireEAB: true, EABKeys: map[string]string{"kid-9": base64.RawURLEncoding.EncodeToString(mac)}})
	var jsonLogs, textLogs syncBuffer
	logger := slog.New(slog.NewMultiHandler(
		slog.NewJSONHandler(&jsonLogs, &slog.HandlerOptions{Level: slog.LevelDebug}),
		slog.NewTextHandler(&textLogs, &slog.HandlerOptions{Level: slog.LevelDebug}),
	))
	var events []string
	var mu sync.Mutex
	onEvent := func(ev autotls.Event) {
		mu.Lock()
		events = append(events, slog.AnyValue(ev).Resolve().String(), fmt.Sprintf("%+v", ev))
		mu.Unlock()
	}
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.Logger = logger
		m.Issuers[0].ExternalAccountBinding = &acme.ExternalAccountBinding{KeyID: "kid-9", HMACKey: mac}
		m.OnEvent = onEvent
	})
	// Registration and issuance.
	if _, err := m.GetCertificate(hello("example.com")); err != nil {
		t.Fatal(err)
	}
	// A failed validation.
	e.failHost.Store("www.example.org")
	if _, err := m.GetCertificate(hello("www.example.org")); err == nil {
		t.Fatal("got a certificate for a name that cannot be validated")
	}
	// A refused binding.
	bad := e.manager(t, nil, func(m *autotls.Manager) {
		m.Logger = logger
		m.Issuers[0].ExternalAccountBinding = &acme.ExternalAccountBinding{KeyID: "kid-9", HMACKey: wrong}
		m.OnEvent = onEvent
	})
	_, err := bad.GetCertificate(hello("example.com"))
	if err == nil {
		t.Fatal("registered with a wrong EAB key")
	}

	printed := map[string]string{"error of the refused binding": err.Error()}
	for _, b := range []*acme.ExternalAccountBinding{m.Issuers[0].ExternalAccountBinding, bad.Issuers[0].ExternalAccountBinding} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			printed[verb+" of the pointer"] += fmt.Sprintf(verb, b)
			printed[verb+" of the value"] += fmt.Sprintf(verb, *b)
		}
		for name, v := range map[string]any{"pointer": b, "value": *b} {
			j, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("json.Marshal(%s): %v", name, err)
			}
			printed["JSON of the "+name] += string(j)
		}
	}
	mu.Lock()
	printed["events"] = strings.Join(events, "\n")
	mu.Unlock()
	printed["JSON logs"], printed["text logs"] = jsonLogs.String(), textLogs.String()

	for _, logs := range []string{"JSON logs", "text logs"} {
		for _, want := range []string{"registered ACME account", "obtained", "failed"} {
			if !strings.Contains(printed[logs], want) {
				t.Errorf("%s miss %q; the test would prove nothing:\n%s", logs, want, printed[logs])
			}
		}
	}
	secrets := append(secretForms(mac), secretForms(wrong)...)
	secrets = append(secrets, "PRIVATE KEY", "private_key_pem")
	for where, text := range printed {
		for _, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("%s contain %q:\n%s", where, secret, text)
			}
		}
	}
}

// faultyStorage wraps a Storage and fails the chosen operations.
type faultyStorage struct {
	storage.Storage
	failLoad, failStore bool
}

var errDisk = errors.New("input/output error")

func (f *faultyStorage) Load(ctx context.Context, key string) ([]byte, error) {
	if f.failLoad && strings.HasPrefix(key, "certificates/") {
		return nil, errDisk
	}
	return f.Storage.Load(ctx, key)
}

func (f *faultyStorage) Store(ctx context.Context, key string, v []byte) error {
	if f.failStore && strings.HasPrefix(key, "certificates/") {
		return errDisk
	}
	return f.Storage.Store(ctx, key, v)
}

func TestStorageFaults(t *testing.T) {
	t.Parallel()
	t.Run("load fails: no order", func(t *testing.T) {
		e := newEnv(t, testpebble.Options{})
		m := e.manager(t, &faultyStorage{Storage: storage.NewMemory(), failLoad: true}, nil)
		_, err := m.GetCertificate(hello("example.com"))
		if !errors.Is(err, errDisk) {
			t.Fatalf("got %v, want the storage error", err)
		}
		if got := e.ca.Requests("newOrder"); got != 0 {
			t.Fatalf("%d orders while storage cannot be read", got)
		}
	})
	t.Run("store fails: served from memory", func(t *testing.T) {
		e := newEnv(t, testpebble.Options{})
		m := e.manager(t, &faultyStorage{Storage: storage.NewMemory(), failStore: true}, nil)
		c, err := m.GetCertificate(hello("example.com"))
		if err != nil || c == nil {
			t.Fatalf("GetCertificate: %v", err)
		}
		again, err := m.GetCertificate(hello("example.com"))
		if err != nil || again != c {
			t.Fatalf("second handshake: %v", err)
		}
		if got := e.ca.Requests("newOrder"); got != 1 {
			t.Fatalf("%d orders, want 1", got)
		}
	})
}

// heldProvider is a DNS provider whose AppendRecords is entered, waits for
// its context to end and then for release before it returns.
type heldProvider struct {
	entered  chan struct{}
	release  chan struct{}
	returned atomic.Bool
}

func (p *heldProvider) AppendRecords(ctx context.Context, _ string, _ []libdns.Record) ([]libdns.Record, error) {
	select {
	case p.entered <- struct{}{}:
	default:
	}
	<-ctx.Done()
	<-p.release
	p.returned.Store(true)
	return nil, ctx.Err()
}

func (p *heldProvider) DeleteRecords(_ context.Context, _ string, recs []libdns.Record) ([]libdns.Record, error) {
	return recs, nil
}

// A second Close, concurrent with the first, returns only once the first
// has ended: once the issuance it cancelled is over.
func TestCloseTwiceWaits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	e.ca.DNS().AddZone("example.com")
	p := &heldProvider{entered: make(chan struct{}, 1), release: make(chan struct{})}
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.DisableHTTP01, m.DisableTLSALPN01 = true, true
		m.HandshakeTimeout = 100 * time.Millisecond
		m.DNS01 = &solvers.DNS01{Provider: p, Resolvers: []string{e.ca.DNS().Addr()}, NameserverPort: dnsPort(t, e.ca.DNS().Addr())}
	})
	if _, err := m.GetCertificate(hello("example.com")); !errors.Is(err, autotls.ErrIssuancePending) {
		t.Fatalf("handshake: %v, want ErrIssuancePending", err)
	}
	select {
	case <-p.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the dns-01 challenge was never presented")
	}
	first := make(chan error, 1)
	go func() { first <- m.Close() }()
	for { // until the first Close has begun
		if _, err := m.GetCertificate(hello("www.example.com")); errors.Is(err, autotls.ErrClosed) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	second := make(chan error, 1)
	go func() { second <- m.Close() }()
	select {
	case <-second:
		if !p.returned.Load() {
			t.Fatal("the second Close returned while the issuance was still running")
		}
	case <-time.After(500 * time.Millisecond):
	}
	close(p.release)
	for _, c := range []chan error{first, second} {
		if err := <-c; err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	if !p.returned.Load() {
		t.Error("Close returned while the issuance was still running")
	}
}
