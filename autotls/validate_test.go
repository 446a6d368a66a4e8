package autotls_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/solvers/dns01test"
	"github.com/tlsmint/tlsmint/storage"
)

// countingStorage counts every call that reaches storage.
type countingStorage struct {
	storage.Storage
	calls atomic.Int32
}

func (c *countingStorage) Load(ctx context.Context, key string) ([]byte, error) {
	c.calls.Add(1)
	return c.Storage.Load(ctx, key)
}

func (c *countingStorage) Store(ctx context.Context, key string, v []byte) error {
	c.calls.Add(1)
	return c.Storage.Store(ctx, key, v)
}

func (c *countingStorage) Lock(ctx context.Context, name string) (func() error, error) {
	c.calls.Add(1)
	return c.Storage.Lock(ctx, name)
}

func TestValidate(t *testing.T) {
	t.Parallel()
	provider := &dns01test.Provider{} // never called: Validate only sees that dns-01 is set
	cases := []struct {
		name        string
		mod         func(*autotls.Manager)
		httpHandler bool   // call HTTPHandler before Validate
		want        string // "" for valid; else a part of the error
	}{
		{"defaults", nil, false, ""},
		{"no challenge at all", func(m *autotls.Manager) { m.DisableTLSALPN01, m.DisableHTTP01 = true, true }, false, "enable tls-alpn-01 or http-01, or set DNSProvider"},
		{"no challenge at all, handler called", func(m *autotls.Manager) { m.DisableTLSALPN01, m.DisableHTTP01 = true, true }, true, "enable tls-alpn-01 or http-01, or set DNSProvider"},
		{"only http-01, no handler yet", func(m *autotls.Manager) { m.DisableTLSALPN01 = true }, false, "call HTTPHandler before Listen or enable tls-alpn-01 or dns-01"},
		{"only http-01, handler called", func(m *autotls.Manager) { m.DisableTLSALPN01 = true }, true, ""},
		{"only dns-01", func(m *autotls.Manager) {
			m.DisableTLSALPN01, m.DisableHTTP01, m.DNSProvider = true, true, provider
		}, false, ""},
		{"unknown key type", func(m *autotls.Manager) { m.KeyType = "ed25519" }, false, `unknown KeyType "ed25519": use KeyP256`},
		{"known key type", func(m *autotls.Manager) { m.KeyType = autotls.KeyRSA2048 }, false, ""},
		{"http directory", func(m *autotls.Manager) { m.DirectoryURL = "http://ca.example/dir" }, false, "not an absolute https URL"},
		{"relative directory", func(m *autotls.Manager) { m.DirectoryURL = "/directory" }, false, "not an absolute https URL"},
		{"directory without host", func(m *autotls.Manager) { m.DirectoryURL = "https:///dir" }, false, "not an absolute https URL"},
		{"https directory", func(m *autotls.Manager) { m.DirectoryURL = "https://ca.example/dir" }, false, ""},
		{"email with mailto", func(m *autotls.Manager) { m.Email = "mailto:ops@example.com" }, false, "use a bare address"},
		{"email with a name", func(m *autotls.Manager) { m.Email = "Ops <ops@example.com>" }, false, "use a bare address"},
		{"email without domain", func(m *autotls.Manager) { m.Email = "ops" }, false, "use a bare address"},
		{"email at a single label", func(m *autotls.Manager) { m.Email = "ops@localhost" }, false, "use a bare address"},
		{"email", func(m *autotls.Manager) { m.Email = "ops@example.com" }, false, ""},
		{"two problems", func(m *autotls.Manager) { m.KeyType, m.Email = "dsa", "x" }, false, "KeyType"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &autotls.Manager{Storage: storage.NewMemory(), Hosts: autotls.HostWhitelist("example.com"), AcceptTOS: true}
			if tc.mod != nil {
				tc.mod(m)
			}
			defer m.Close()
			if tc.httpHandler {
				m.HTTPHandler(nil)
			}
			err := m.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if !errors.Is(err, autotls.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrInvalidConfig saying %q", err, tc.want)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	m := &autotls.Manager{Storage: storage.NewMemory(), KeyType: "dsa", Email: "x", DirectoryURL: "ftp://ca", AcceptTOS: true}
	defer m.Close()
	err := m.Validate()
	for _, want := range []string{"KeyType", "Email", "DirectoryURL"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want it to mention %s", err, want)
		}
	}
}

// An invalid Manager fails in Listen before listening, in Manage before
// ordering, and in GetCertificate (all TLSConfig can do) before storage or
// the CA is touched.
func TestInvalidConfigFailsEarly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	store := &countingStorage{Storage: storage.NewMemory()}
	m := e.manager(t, store, func(m *autotls.Manager) { m.KeyType = "dsa" })
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if _, err := m.Listen("tcp", busy.Addr().String()); !errors.Is(err, autotls.ErrInvalidConfig) {
		t.Errorf("Listen: got %v, want ErrInvalidConfig before the listen error", err)
	}
	if err := m.Manage(ctxT(t), "example.com"); !errors.Is(err, autotls.ErrInvalidConfig) {
		t.Errorf("Manage: got %v, want ErrInvalidConfig", err)
	}
	if _, err := m.GetCertificate(hello("example.com")); !errors.Is(err, autotls.ErrInvalidConfig) {
		t.Errorf("GetCertificate: got %v, want ErrInvalidConfig", err)
	}
	// A refused name is still refused by the policy first.
	if _, err := m.GetCertificate(hello("other.example.net")); !errors.Is(err, autotls.ErrHostNotAllowed) {
		t.Errorf("GetCertificate(refused name): got %v, want ErrHostNotAllowed", err)
	}
	if got := store.calls.Load(); got != 0 {
		t.Errorf("got %d storage calls, want 0", got)
	}
	if got := totalRequests(e.ca); got != 0 {
		t.Errorf("got %d CA requests, want 0", got)
	}
}

// Without Storage and without a user cache folder there is nowhere to keep
// certificates: Validate says so, and NewListener fails before listening.
func TestValidateNoStorage(t *testing.T) {
	// Not parallel: changes the environment.
	t.Setenv("HOME", "")
	t.Setenv("XDG_CACHE_HOME", "")
	m := &autotls.Manager{Hosts: autotls.HostWhitelist("example.com"), AcceptTOS: true}
	defer m.Close()
	if err := m.Validate(); !errors.Is(err, autotls.ErrInvalidConfig) || !strings.Contains(err.Error(), "set Manager.Storage") {
		t.Fatalf("Validate: got %v, want ErrInvalidConfig saying to set Manager.Storage", err)
	}
	ln, err := autotls.NewListener("example.com")
	if err == nil {
		ln.Close()
	}
	if !errors.Is(err, autotls.ErrInvalidConfig) {
		t.Fatalf("NewListener: got %v, want ErrInvalidConfig", err)
	}
}
