package autotls_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/storage"
)

// handshakeNoSNI completes a handshake with addr sending no server name, and
// verifies the server's chain against the test CA for want (a DNS name or
// an IP address).
func (e *env) handshakeNoSNI(t *testing.T, addr, want string) (*x509.Certificate, error) {
	t.Helper()
	roots := e.ca.RootPool()
	conf := &tls.Config{
		// No ServerName: the client sends no SNI; the chain is checked
		// below against the name the test expects instead.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if cs.ServerName != "" {
				return errors.New("the client sent a server name")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: want, Roots: roots, Intermediates: inter})
			return err
		},
	}
	d := tls.Dialer{Config: conf}
	c, err := d.DialContext(ctxT(t), "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

func TestDefaultServerName(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		mod     func(*autotls.Manager)
		want    string // the name the served certificate is verified for
		wantErr string // a part of GetCertificate's error for a hello without SNI
	}{
		{"host name", func(m *autotls.Manager) { m.DefaultServerName = "example.com" }, "example.com", ""},
		{"normalised", func(m *autotls.Manager) { m.DefaultServerName = "WWW.Example.ORG." }, "www.example.org", ""},
		{"IP address", func(m *autotls.Manager) {
			m.DefaultServerName = "127.0.0.1"
			m.AllowIPCertificates = true
			m.Hosts = autotls.HostWhitelist("127.0.0.1")
		}, "127.0.0.1", ""},
		{"none", nil, "", "set Manager.DefaultServerName"},
		{"not allowed by the policy", func(m *autotls.Manager) { m.DefaultServerName = "other.example.net" }, "", "not in the whitelist"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, testpebble.Options{})
			m := e.manager(t, nil, tc.mod)
			addr := serve(t, m)
			leaf, err := e.handshakeNoSNI(t, addr, tc.want)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("handshake without SNI: got a certificate for %v, want a failure", leaf.DNSNames)
				}
				_, err := m.GetCertificate(hello(""))
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("GetCertificate without SNI: got %v, want an error saying %q", err, tc.wantErr)
				}
				if got := e.ca.Requests("newOrder"); got != 0 {
					t.Fatalf("got %d orders, want 0", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake without SNI: %v", err)
			}
			// Again, from the cache.
			if _, err := e.handshakeNoSNI(t, addr, tc.want); err != nil {
				t.Fatalf("second handshake without SNI: %v", err)
			}
			if got := e.ca.Requests("newOrder"); got != 1 {
				t.Fatalf("got %d orders, want 1", got)
			}
		})
	}
}

// A curl to https://127.0.0.1/ verifies the address and sends no SNI.
func TestDefaultServerNameIPClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	m := e.manager(t, nil, func(m *autotls.Manager) {
		m.DefaultServerName = "127.0.0.1"
		m.AllowIPCertificates = true
		m.Hosts = autotls.HostWhitelist("127.0.0.1")
	})
	addr := serve(t, m)
	_, port, _ := net.SplitHostPort(addr)
	d := tls.Dialer{Config: &tls.Config{RootCAs: e.ca.RootPool()}} // ServerName from the address
	c, err := d.DialContext(ctxT(t), "tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		t.Fatalf("got %v, want a certificate for 127.0.0.1", err)
	}
	c.Close()
}

func TestDefaultServerNameValidated(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, def string
		allowIP   bool
		valid     bool
	}{
		{"host", "example.com", false, true},
		{"IP with AllowIPCertificates", "192.0.2.1", true, true},
		{"IP without AllowIPCertificates", "192.0.2.1", false, false},
		{"wildcard", "*.example.com", false, false},
		{"malformed", "a/b", false, false},
	}
	for _, tc := range cases {
		m := &autotls.Manager{DefaultServerName: tc.def, AllowIPCertificates: tc.allowIP, Storage: storage.NewMemory(), AcceptTOS: true}
		err := m.Validate()
		if got := err == nil; got != tc.valid {
			t.Errorf("%s: Validate: got %v, want valid=%v", tc.name, err, tc.valid)
		}
		if err != nil && (!errors.Is(err, autotls.ErrInvalidConfig) || !strings.Contains(err.Error(), "DefaultServerName")) {
			t.Errorf("%s: got %v, want ErrInvalidConfig naming DefaultServerName", tc.name, err)
		}
		m.Close()
	}
}

// A client without SNI is served from the cache without allocating, even
// when DefaultServerName is not written in normal form.
func TestDefaultServerNameNoAllocs(t *testing.T) {
	// Not parallel: AllocsPerRun.
	store, names, _ := storeN(t, newFixture(t), 1)
	m := benchManager(store, names)
	m.DefaultServerName = strings.ToUpper(names[0]) + "."
	defer m.Close()
	h := hello("")
	c, err := m.GetCertificate(h)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Leaf.DNSNames[0]; got != names[0] {
		t.Fatalf("got a certificate for %s, want %s", got, names[0])
	}
	if allocs := testing.AllocsPerRun(100, func() { m.GetCertificate(h) }); allocs != 0 {
		t.Errorf("GetCertificate without SNI: got %v allocations, want 0", allocs)
	}
}
