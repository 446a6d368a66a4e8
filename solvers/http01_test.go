package solvers_test

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/solvers"
	"github.com/tlsmint/tlsmint/storage"
)

const (
	testToken  = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
	testThumb  = "nP1qzpXGymHBrUEepNY9HCsQk7K8KhOypzEt62jcerQ"
	testKeyAut = testToken + "." + testThumb
)

func httpChallenge(idType, id string) acme.Challenge {
	return acme.Challenge{
		Type:             acme.ChallengeHTTP01,
		URL:              "https://ca.test/chal/1",
		Token:            testToken,
		Identifier:       acme.Identifier{Type: idType, Value: id},
		KeyAuthorization: testKeyAut,
	}
}

// recordingStore is a TokenStore that remembers every token it was given.
type recordingStore struct {
	solvers.MemoryTokens
	mu   sync.Mutex
	puts []string
}

func (s *recordingStore) Put(ctx context.Context, token string, t solvers.HTTP01Token) error {
	s.mu.Lock()
	s.puts = append(s.puts, token)
	s.mu.Unlock()
	return s.MemoryTokens.Put(ctx, token, t)
}

func TestHTTP01PresentRefuses(t *testing.T) {
	good := httpChallenge(acme.IdentifierDNS, "example.com")
	tests := []struct {
		name   string
		modify func(*acme.Challenge)
		want   error
	}{
		{"dot-dot path", func(c *acme.Challenge) { c.Token = "../../x"; c.KeyAuthorization = c.Token + "." + testThumb }, solvers.ErrInvalidToken},
		{"slash", func(c *acme.Challenge) { c.Token = "a/b"; c.KeyAuthorization = c.Token + "." + testThumb }, solvers.ErrInvalidToken},
		{"escaped dots", func(c *acme.Challenge) { c.Token = "%2e%2e"; c.KeyAuthorization = c.Token + "." + testThumb }, solvers.ErrInvalidToken},
		{"4 KiB", func(c *acme.Challenge) {
			c.Token = strings.Repeat("a", 4096)
			c.KeyAuthorization = c.Token + "." + testThumb
		}, solvers.ErrInvalidToken},
		{"empty", func(c *acme.Challenge) { c.Token = ""; c.KeyAuthorization = "." + testThumb }, solvers.ErrInvalidToken},
		{"padding", func(c *acme.Challenge) { c.Token = "abc="; c.KeyAuthorization = c.Token + "." + testThumb }, solvers.ErrInvalidToken},
		{"space", func(c *acme.Challenge) { c.Token = "ab c"; c.KeyAuthorization = c.Token + "." + testThumb }, solvers.ErrInvalidToken},
		{"key authorization for another token", func(c *acme.Challenge) { c.KeyAuthorization = "other." + testThumb }, nil},
		{"key authorization with newline", func(c *acme.Challenge) { c.KeyAuthorization += "\n<html>" }, nil},
		{"wildcard", func(c *acme.Challenge) { c.Wildcard = true }, solvers.ErrInvalidIdentifier},
		{"bad DNS name", func(c *acme.Challenge) { c.Identifier.Value = "exa mple.com" }, solvers.ErrInvalidIdentifier},
		{"bad IP", func(c *acme.Challenge) { c.Identifier = acme.Identifier{Type: acme.IdentifierIP, Value: "300.1.1.1"} }, solvers.ErrInvalidIdentifier},
		{"unknown identifier type", func(c *acme.Challenge) { c.Identifier.Type = "email" }, solvers.ErrInvalidIdentifier},
		{"wrong challenge type", func(c *acme.Challenge) { c.Type = acme.ChallengeDNS01 }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := &recordingStore{}
			h := &solvers.HTTP01{Store: store}
			chal := good
			tt.modify(&chal)
			err := h.Present(t.Context(), chal)
			if err == nil {
				t.Fatalf("Present: got nil error, want one")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Present: got %v, want an error wrapping %v", err, tt.want)
			}
			if len(store.puts) != 0 {
				t.Errorf("store got tokens %q, want none", store.puts)
			}
			// Nothing is served under the refused token either.
			req := httptest.NewRequest(http.MethodGet, "http://example.com/", nil)
			req.URL.Path = solvers.HTTP01PathPrefix + chal.Token
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusNotFound {
				t.Errorf("serving the refused token: got status %d, want 404", rec.Code)
			}
		})
	}
}

func TestHTTP01Handler(t *testing.T) {
	path := solvers.HTTP01PathPrefix + testToken
	tests := []struct {
		name     string
		id       acme.Identifier
		method   string
		target   string // request URI, relative to http://<host>
		host     string
		wantCode int // 0: passed through to the wrapped handler
		wantBody string
	}{
		{"GET", dnsID("example.com"), "GET", path, "example.com", 200, testKeyAut},
		{"HEAD", dnsID("example.com"), "HEAD", path, "example.com", 200, ""},
		{"host with port", dnsID("example.com"), "GET", path, "example.com:5002", 200, testKeyAut},
		{"host in upper case", dnsID("example.com"), "GET", path, "EXAMPLE.Com", 200, testKeyAut},
		{"host with trailing dot", dnsID("example.com"), "GET", path, "example.com.:80", 200, testKeyAut},
		{"IPv4 host", ipID("192.0.2.7"), "GET", path, "192.0.2.7:80", 200, testKeyAut},
		{"IPv6 host in brackets", ipID("2001:db8::1"), "GET", path, "[2001:db8::1]:80", 200, testKeyAut},
		{"IPv6 host spelt differently", ipID("2001:db8::1"), "GET", path, "[2001:DB8:0::1]", 200, testKeyAut},
		{"bare IPv6 host", ipID("2001:db8::1"), "GET", path, "2001:db8::1", 200, testKeyAut},
		{"query ignored", dnsID("example.com"), "GET", path + "?x=1", "example.com", 200, testKeyAut},

		{"POST", dnsID("example.com"), "POST", path, "example.com", 0, ""},
		{"PUT", dnsID("example.com"), "PUT", path, "example.com", 0, ""},
		{"DELETE", dnsID("example.com"), "DELETE", path, "example.com", 0, ""},
		{"other host", dnsID("example.com"), "GET", path, "example.org", 0, ""},
		{"host suffix", dnsID("example.com"), "GET", path, "example.com.evil.test", 0, ""},
		{"host folding to the name", dnsID("kelvin.example.com"), "GET", path, "\u212aelvin.example.com", 0, ""},
		{"subdomain host", dnsID("example.com"), "GET", path, "www.example.com", 0, ""},
		{"empty host", dnsID("example.com"), "GET", path, "", 0, ""},
		{"bad port", dnsID("example.com"), "GET", path, "example.com:http", 0, ""},
		{"two ports", dnsID("example.com"), "GET", path, "example.com:80:80", 0, ""},
		{"unclosed bracket", ipID("2001:db8::1"), "GET", path, "[2001:db8::1:80", 0, ""},
		{"other IPv6", ipID("2001:db8::1"), "GET", path, "[2001:db8::2]", 0, ""},
		{"IPv4 for IPv6", ipID("2001:db8::1"), "GET", path, "192.0.2.1", 0, ""},
		{"name for IP", ipID("192.0.2.7"), "GET", path, "example.com", 0, ""},
		{"unknown token", dnsID("example.com"), "GET", solvers.HTTP01PathPrefix + "AAAAAAAAAAAAAAAAAAAAAAAAAAAA", "example.com", 0, ""},
		{"trailing slash", dnsID("example.com"), "GET", path + "/", "example.com", 0, ""},
		{"sub-path", dnsID("example.com"), "GET", path + "/x", "example.com", 0, ""},
		{"escaped character", dnsID("example.com"), "GET", solvers.HTTP01PathPrefix + "%65" + testToken[1:], "example.com", 0, ""},
		{"escaped dot-dot", dnsID("example.com"), "GET", solvers.HTTP01PathPrefix + "%2e%2e", "example.com", 0, ""},
		{"dot-dot", dnsID("example.com"), "GET", solvers.HTTP01PathPrefix + "../acme-challenge/" + testToken, "example.com", 0, ""},
		{"upper-case prefix", dnsID("example.com"), "GET", "/.WELL-KNOWN/acme-challenge/" + testToken, "example.com", 0, ""},
		{"no prefix", dnsID("example.com"), "GET", "/" + testToken, "example.com", 0, ""},
		{"prefix only", dnsID("example.com"), "GET", solvers.HTTP01PathPrefix, "example.com", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &solvers.HTTP01{}
			chal := httpChallenge(tt.id.Type, tt.id.Value)
			if err := h.Present(t.Context(), chal); err != nil {
				t.Fatalf("Present: %v", err)
			}
			req := httptest.NewRequest(tt.method, "http://placeholder"+tt.target, nil)
			req.Host = tt.host

			// Alone: everything else is a 404.
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			wantCode := tt.wantCode
			if wantCode == 0 {
				wantCode = http.StatusNotFound
			}
			if rec.Code != wantCode {
				t.Fatalf("ServeHTTP: got status %d, want %d", rec.Code, wantCode)
			}
			if tt.wantCode == http.StatusOK {
				if got := rec.Body.String(); got != tt.wantBody {
					t.Errorf("body: got %q, want %q", got, tt.wantBody)
				}
				if got := rec.Header().Get("Content-Type"); got != "text/plain" {
					t.Errorf("Content-Type: got %q, want text/plain", got)
				}
			} else if strings.Contains(rec.Body.String(), testThumb) {
				t.Errorf("a refused request got the key authorization: %q", rec.Body.String())
			}

			// As middleware: everything else goes to the application.
			var passed bool
			app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { passed = true; w.WriteHeader(http.StatusTeapot) })
			rec = httptest.NewRecorder()
			h.Middleware(app).ServeHTTP(rec, req)
			if want := tt.wantCode == 0; passed != want {
				t.Errorf("middleware passed the request on: got %v, want %v", passed, want)
			}
		})
	}
}

func dnsID(v string) acme.Identifier { return acme.Identifier{Type: acme.IdentifierDNS, Value: v} }
func ipID(v string) acme.Identifier  { return acme.Identifier{Type: acme.IdentifierIP, Value: v} }

func TestHTTP01CleanUp(t *testing.T) {
	h := &solvers.HTTP01{}
	chal := httpChallenge(acme.IdentifierDNS, "example.com")
	if err := h.Present(t.Context(), chal); err != nil {
		t.Fatalf("Present: %v", err)
	}
	get := func() int {
		req := httptest.NewRequest(http.MethodGet, "http://example.com"+chal.HTTP01ResourcePath(), nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	for i := range 3 { // Pebble asks three times
		if got := get(); got != http.StatusOK {
			t.Fatalf("request %d before CleanUp: got %d, want 200", i+1, got)
		}
	}
	// CleanUp works even with a cancelled context.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := h.CleanUp(ctx, chal); err != nil {
		t.Fatalf("CleanUp: %v", err)
	}
	if got := get(); got != http.StatusNotFound {
		t.Errorf("after CleanUp: got %d, want 404", got)
	}
}

// mapStorage is a minimal shared key-value store with the semantics of
// storage.Storage's Store, Load and Delete.
type mapStorage struct {
	mu   sync.Mutex
	m    map[string][]byte
	fail error
}

func (s *mapStorage) Store(_ context.Context, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	if s.m == nil {
		s.m = make(map[string][]byte)
	}
	s.m[key] = append([]byte(nil), value...)
	return nil
}

func (s *mapStorage) Load(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	v, ok := s.m[key]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return append([]byte(nil), v...), nil
}

func (s *mapStorage) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	delete(s.m, key)
	return nil
}

func (s *mapStorage) keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.m {
		out = append(out, k)
	}
	return out
}

func TestStorageTokens(t *testing.T) {
	shared := &mapStorage{}
	nodeA := &solvers.HTTP01{Store: solvers.StorageTokens{Storage: shared}}
	nodeB := &solvers.HTTP01{Store: solvers.StorageTokens{Storage: shared}}
	chal := httpChallenge(acme.IdentifierDNS, "example.com")
	if err := nodeA.Present(t.Context(), chal); err != nil {
		t.Fatalf("Present: %v", err)
	}
	if got, want := shared.keys(), []string{solvers.DefaultTokenPrefix + "/" + testToken}; len(got) != 1 || got[0] != want[0] {
		t.Errorf("stored keys: got %q, want %q", got, want)
	}
	req := httptest.NewRequest(http.MethodGet, "http://example.com"+chal.HTTP01ResourcePath(), nil)
	rec := httptest.NewRecorder()
	nodeB.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Body.String() != testKeyAut {
		t.Errorf("other node: got %d %q, want 200 %q", rec.Code, rec.Body.String(), testKeyAut)
	}

	// A failing store is a 500 on a challenge request, not a 404.
	shared.fail = errors.New("database down")
	rec = httptest.NewRecorder()
	nodeB.ServeHTTP(rec, req)
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("failing store: got %d, want 500", rec.Code)
	}
	if err := nodeA.CleanUp(t.Context(), chal); !errors.Is(err, shared.fail) {
		t.Errorf("CleanUp with a failing store: got %v, want it wrapped", err)
	}
	shared.fail = nil
	if err := nodeA.CleanUp(t.Context(), chal); err != nil {
		t.Fatalf("CleanUp: %v", err)
	}
	rec = httptest.NewRecorder()
	nodeB.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotFound {
		t.Errorf("after CleanUp: got %d, want 404", rec.Code)
	}
}

// A node answers the challenges it presented from memory, even while the
// shared store fails (a database failover during the validation), instead
// of a 500 that fails the validation at the CA; the others' need the store.
func TestStorageTokensOwnFromMemory(t *testing.T) {
	shared := &mapStorage{}
	nodeA := &solvers.HTTP01{Store: solvers.StorageTokens{Storage: shared}}
	nodeB := &solvers.HTTP01{Store: solvers.StorageTokens{Storage: shared}}
	chal := httpChallenge(acme.IdentifierDNS, "example.com")
	if err := nodeA.Present(t.Context(), chal); err != nil {
		t.Fatalf("Present: %v", err)
	}
	req := httptest.NewRequest(http.MethodGet, "http://example.com"+chal.HTTP01ResourcePath(), nil)
	shared.fail = errors.New("database down")
	for node, want := range map[*solvers.HTTP01]int{nodeA: http.StatusOK, nodeB: http.StatusInternalServerError} {
		rec := httptest.NewRecorder()
		node.ServeHTTP(rec, req)
		if rec.Code != want || want == http.StatusOK && rec.Body.String() != testKeyAut {
			t.Errorf("node A is %v: got %d %q while the store fails, want %d", node == nodeA, rec.Code, rec.Body.String(), want)
		}
	}
	shared.fail = nil
	if err := nodeA.CleanUp(t.Context(), chal); err != nil {
		t.Fatalf("CleanUp: %v", err)
	}
	for _, node := range []*solvers.HTTP01{nodeA, nodeB} {
		rec := httptest.NewRecorder()
		node.ServeHTTP(rec, req)
		if rec.Code != http.StatusNotFound {
			t.Errorf("after CleanUp: got %d, want 404", rec.Code)
		}
	}
}

// TestHTTP01Pebble issues certificates with real http-01 validation.
func TestHTTP01Pebble(t *testing.T) {
	tests := []struct {
		name   string
		ids    []acme.Identifier
		fleet  bool // present on one node, answer on another
		middle bool // serve through the middleware
	}{
		{"DNS name", acme.DNSNames("http01.example.com"), false, false},
		{"two names, middleware", acme.DNSNames("a.example.com", "b.example.com"), false, true},
		{"IP identifier", acme.IPAddresses(netip.MustParseAddr("127.0.0.1")), false, false},
		{"fleet over shared storage", acme.DNSNames("fleet.example.com"), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ca := newCA(t, testpebble.Options{})
			shared := storage.NewMemory()
			presenter := &solvers.HTTP01{}
			server := presenter
			if tt.fleet {
				presenter = &solvers.HTTP01{Store: solvers.StorageTokens{Storage: shared}}
				server = &solvers.HTTP01{Store: solvers.StorageTokens{Storage: shared}}
			}
			var served atomic.Int64
			var handler http.Handler = server
			if tt.middle {
				handler = server.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					t.Errorf("application got %s %s", r.Method, r.URL)
					http.NotFound(w, r)
				}))
			}
			testsetup.ServeHTTP(t, "127.0.0.1:"+strconv.Itoa(ca.HTTPPort()), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				served.Add(1)
				handler.ServeHTTP(w, r)
			}))
			c := newClient(t, ca)
			if _, err := obtain(t, ca, c, acme.ChallengeHTTP01, presenter, tt.ids); err != nil {
				t.Fatalf("Obtain: %v", err)
			}
			if n, want := served.Load(), int64(3*len(tt.ids)); n < want {
				t.Errorf("challenge requests: got %d, want at least %d (three perspectives each)", n, want)
			}
			if keys, err := shared.List(t.Context(), ""); err != nil || len(keys) != 0 {
				t.Errorf("tokens left in shared storage: %q, %v", keys, err)
			}
		})
	}
}

// TestHTTP01PebbleWrongHost checks that the CA's request, seen with the
// wrong Host, is refused and validation fails.
func TestHTTP01PebbleWrongHost(t *testing.T) {
	ca := newCA(t, testpebble.Options{})
	h := &solvers.HTTP01{}
	// Rewrite the Host header as a confused proxy would: the handler must
	// refuse, and the CA must see a 404.
	testsetup.ServeHTTP(t, "127.0.0.1:"+strconv.Itoa(ca.HTTPPort()), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Host = "other.example.com"
		h.ServeHTTP(w, r)
	}))
	c := newClient(t, ca)
	_, err := obtain(t, ca, c, acme.ChallengeHTTP01, h, acme.DNSNames("wronghost.example.com"))
	if !errors.Is(err, acme.ErrAuthorizationInvalid) {
		t.Fatalf("Obtain: got %v, want %v", err, acme.ErrAuthorizationInvalid)
	}
}
