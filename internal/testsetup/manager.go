package testsetup

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/storage"
)

// Manager returns a Manager of ca: ca as its one issuer, ca's HTTP client,
// store as its storage (nil: a fresh directory), hosts as its whitelist,
// the terms of service accepted. mod, when not nil, changes it before its
// first use. It is closed when the test ends. Nothing answers the CA's
// challenges for it: see [Challenges].
func Manager(tb testing.TB, ca *testpebble.CA, store storage.Storage, mod func(*autotls.Manager), hosts ...string) *autotls.Manager {
	tb.Helper()
	if store == nil {
		store = storage.Dir(tb.TempDir())
	}
	m := &autotls.Manager{
		Issuers:    []autotls.Issuer{{DirectoryURL: ca.DirectoryURL()}},
		HTTPClient: ca.HTTPClient(),
		Storage:    store,
		Hosts:      autotls.HostWhitelist(hosts...),
		AcceptTOS:  true,
	}
	if mod != nil {
		mod(m)
	}
	tb.Cleanup(func() { m.Close() })
	return m
}

// Challenges answers a CA's http-01 and tls-alpn-01 validations, on the
// ports the CA connects to, for the Manager it is given with Use: the one
// "behind the load balancer". Before Use, or after Use(nil), the http-01
// server answers 404 and the tls-alpn-01 server fails the handshake.
//
// A Challenges is safe for concurrent use.
type Challenges struct {
	mu       sync.Mutex
	m        *autotls.Manager
	http     http.Handler
	failHost string // http-01 answers 404 for it
}

// NewChallenges serves ca's http-01 and tls-alpn-01 ports until the test
// ends.
func NewChallenges(tb testing.TB, ca *testpebble.CA) *Challenges {
	tb.Helper()
	c := &Challenges{}
	ca.ServeHTTP01(tb, http.HandlerFunc(c.serveHTTP))
	ca.ServeTLSALPN01(tb, c.getCertificate)
	return c
}

// Use makes m the Manager that answers the validations from now on.
func (c *Challenges) Use(m *autotls.Manager) {
	var h http.Handler
	if m != nil {
		h = m.HTTPHandler(nil)
	}
	c.mu.Lock()
	c.m, c.http = m, h
	c.mu.Unlock()
}

// FailHTTP01 makes the http-01 server answer 404 for host from now on, so
// that its validations fail; "" makes it answer for every host again.
func (c *Challenges) FailHTTP01(host string) {
	c.mu.Lock()
	c.failHost = host
	c.mu.Unlock()
}

func (c *Challenges) serveHTTP(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	c.mu.Lock()
	h, fail := c.http, c.failHost
	c.mu.Unlock()
	if h == nil || (fail != "" && host == fail) {
		http.NotFound(w, r)
		return
	}
	h.ServeHTTP(w, r)
}

func (c *Challenges) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	m := c.m
	c.mu.Unlock()
	if m == nil {
		return nil, errNoManager
	}
	return m.GetCertificate(hello)
}

// errNoManager fails a tls-alpn-01 handshake that comes before any Use.
var errNoManager = errors.New("testsetup: no Manager answers the challenges yet")
