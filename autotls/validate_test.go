package autotls_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/solvers"
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
		{"no challenge at all", func(m *autotls.Manager) { m.DisableTLSALPN01, m.DisableHTTP01 = true, true }, false, "enable tls-alpn-01 or http-01, or set DNS01"},
		{"no challenge at all, handler called", func(m *autotls.Manager) { m.DisableTLSALPN01, m.DisableHTTP01 = true, true }, true, "enable tls-alpn-01 or http-01, or set DNS01"},
		{"only http-01, no handler yet", func(m *autotls.Manager) { m.DisableTLSALPN01 = true }, false, "call HTTPHandler before Listen or enable tls-alpn-01 or dns-01"},
		{"only http-01, handler called", func(m *autotls.Manager) { m.DisableTLSALPN01 = true }, true, ""},
		{"only dns-01", func(m *autotls.Manager) {
			m.DisableTLSALPN01, m.DisableHTTP01, m.DNS01 = true, true, &solvers.DNS01{Provider: provider}
		}, false, ""},
		{"unknown key type", func(m *autotls.Manager) { m.KeyType = "ed25519" }, false, `unknown KeyType "ed25519": use KeyP256`},
		{"known key type", func(m *autotls.Manager) { m.KeyType = autotls.KeyRSA2048 }, false, ""},
		{"http directory", issuer(autotls.Issuer{DirectoryURL: "http://ca.example/dir"}), false, `Issuers[0].DirectoryURL "http://ca.example/dir" is not an absolute https URL`},
		{"relative directory", issuer(autotls.Issuer{DirectoryURL: "/directory"}), false, "Issuers[0].DirectoryURL \"/directory\" is not an absolute https URL"},
		{"directory without host", issuer(autotls.Issuer{DirectoryURL: "https:///dir"}), false, "not an absolute https URL"},
		{"empty directory", issuer(autotls.Issuer{Email: "ops@example.com"}), false, `Issuers[0].DirectoryURL "" is not an absolute https URL`},
		{"https directory", issuer(autotls.Issuer{DirectoryURL: "https://ca.example/dir"}), false, ""},
		{"email with mailto", issuer(autotls.LetsEncrypt("mailto:ops@example.com")), false, "Issuers[0].Email \"mailto:ops@example.com\""},
		{"email with a name", issuer(autotls.LetsEncrypt("Ops <ops@example.com>")), false, "use a bare address"},
		{"email without domain", issuer(autotls.LetsEncrypt("ops")), false, "use a bare address"},
		{"email at a single label", issuer(autotls.LetsEncrypt("ops@localhost")), false, "use a bare address"},
		{"email", issuer(autotls.LetsEncrypt("ops@example.com")), false, ""},
		{"second issuer", issuer(autotls.LetsEncrypt("ops@example.com"), autotls.Issuer{DirectoryURL: "ca.example"}), false, `Issuers[1].DirectoryURL "ca.example"`},
		{"two problems", func(m *autotls.Manager) { m.KeyType, m.Issuers = "dsa", []autotls.Issuer{autotls.LetsEncrypt("x")} }, false, "KeyType"},
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

// issuer returns a TestValidate change that sets Issuers.
func issuer(iss ...autotls.Issuer) func(*autotls.Manager) {
	return func(m *autotls.Manager) { m.Issuers = iss }
}

// Validate reports every misconfiguration in its one error, each problem
// naming its field (an issuer's by its index in Issuers), the challenge
// check included.
func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	m := &autotls.Manager{
		Storage: storage.NewMemory(),
		KeyType: "dsa",
		Issuers: []autotls.Issuer{
			{DirectoryURL: "ftp://ca", Email: "x"},
			autotls.LetsEncrypt("ops@example.com"), // valid: not named
			{DirectoryURL: "https://ca.example/dir", Email: "Ops <ops@example.com>"},
			{Email: "ops@example.com"},
		},
		DefaultServerName: "bad_name..example",
		DisableTLSALPN01:  true,
		DisableHTTP01:     true,
		AcceptTOS:         true,
	}
	defer m.Close()
	err := m.Validate()
	if !errors.Is(err, autotls.ErrInvalidConfig) {
		t.Fatalf("got %v, want ErrInvalidConfig", err)
	}
	wants := []string{
		`unknown KeyType "dsa"`,
		`Issuers[0].DirectoryURL "ftp://ca" is not an absolute https URL`,
		`Issuers[0].Email "x"`,
		`Issuers[2].Email "Ops <ops@example.com>"`,
		`Issuers[3].DirectoryURL "" is not an absolute https URL`,
		`DefaultServerName "bad_name..example"`,
		"no challenge can be solved",
	}
	for _, want := range wants {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want it to say %s", err, want)
		}
	}
	for _, notWant := range []string{"Issuers[1]", "Issuers[2].DirectoryURL", "Issuers[3].Email"} {
		if strings.Contains(err.Error(), notWant) {
			t.Errorf("got %v, want nothing about %s (valid)", err, notWant)
		}
	}
	// One line per problem: each is its own error, each matching
	// ErrInvalidConfig.
	if got := strings.Count(err.Error(), "autotls: invalid configuration"); got != len(wants) {
		t.Errorf("got %d problems in %v, want %d", got, err, len(wants))
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
	busy := testsetup.Listen(t, "127.0.0.1:0")
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
