package autotls

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/solvers"
)

// TLSConfig returns a TLS configuration that serves the Manager's
// certificates: GetCertificate, ALPN for h2, http/1.1 and acme-tls/1
// (tls-alpn-01), TLS 1.2 at least. Each call returns a new Config that the
// caller may modify.
//
// With a valid configuration, TLSConfig also starts the Manager's
// background work (as Listen, Manage and the first handshake that reaches
// storage do): the schedule is built from storage — the renewal of every
// stored certificate planned, from the schedule index without loading
// them — and the index kept up to date.
//
// TLSConfig cannot return an error: call [Manager.Validate] to learn of a
// configuration that cannot obtain certificates. Otherwise the first
// handshake for a name that is not cached fails with Validate's error
// (without touching storage or the CA).
func (m *Manager) TLSConfig() *tls.Config {
	if st := m.state(); m.validate(st) == nil {
		m.startBackground()
	}
	return &tls.Config{
		GetCertificate: m.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1", acme.ALPNProto},
		MinVersion:     tls.VersionTLS12,
	}
}

// HTTPHandler returns a handler for port 80 that answers http-01 challenges
// (unknown or malformed ones get 404) and passes every other request to
// fallback. With fallback nil, GET and
// HEAD requests are redirected to https on the same host (its port
// dropped), path and query, and anything else gets 400; a request target
// that is not a path ("*", an opaque URI) is redirected to "/".
//
// Calling HTTPHandler tells the Manager that http-01 can be used (unless
// DisableHTTP01 is set), and it is then preferred over tls-alpn-01; dns-01,
// when configured, comes first for DNS names.
func (m *Manager) HTTPHandler(fallback http.Handler) http.Handler {
	st := m.state()
	if !m.DisableHTTP01 {
		st.httpInUse.Store(true)
	}
	if fallback == nil {
		fallback = http.HandlerFunc(redirectHTTPS)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !m.DisableHTTP01 && strings.HasPrefix(r.URL.Path, solvers.HTTP01PathPrefix) {
			// A challenge the Manager does not know is a 404, never a
			// redirect the CA would follow.
			st.http01.ServeHTTP(w, r)
			return
		}
		fallback.ServeHTTP(w, r)
	})
}

func redirectHTTPS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "use HTTPS", http.StatusBadRequest)
		return
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if a, ok := parseIPName(host); !ok {
		n, err := NormalizeName(host)
		if err != nil {
			http.Error(w, "bad host", http.StatusBadRequest)
			return
		}
		host = n
	} else if a.Is6() {
		host = "[" + a.String() + "]"
	} else {
		host = a.String() // "[192.0.2.1]" is no URL host
	}
	// Only the path and query: a request target in another form ("*",
	// "http:@evil.test") must not change the host the redirect names.
	target := r.URL.EscapedPath()
	if !strings.HasPrefix(target, "/") {
		target = "/"
	}
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	http.Redirect(w, r, "https://"+host+target, http.StatusFound)
}

// Listen announces on the local network address and returns a TLS listener
// that serves the Manager's certificates. It calls [Manager.Validate] first
// and returns its error without listening; errors from net.Listen are
// returned at once too.
func (m *Manager) Listen(network, addr string) (net.Listener, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("autotls: %w", err)
	}
	return tls.NewListener(ln, m.TLSConfig()), nil
}

// NewListener is the one-line way to serve HTTPS: it listens on :443 with
// a Manager whose host policy allows exactly domains (wildcard patterns
// such as "*.example.com" included), using Let's Encrypt production, the
// user's cache folder and tls-alpn-01. Closing the listener closes the
// Manager.
//
// Calling NewListener accepts the CA's terms of service on the caller's
// behalf: its Manager sets [Manager.AcceptTOS], and the terms' URL is
// logged when the account is registered. Use a [Manager] to decide
// otherwise.
//
//	ln, err := autotls.NewListener("example.com", "www.example.com")
//	if err != nil { log.Fatal(err) }
//	log.Fatal(http.Serve(ln, handler))
//
// Unlike autocert's, it returns the listen error (or [Manager.Validate]'s,
// for example when there is no user cache folder) at once rather than from
// every Accept.
func NewListener(domains ...string) (net.Listener, error) {
	if len(domains) == 0 {
		return nil, errors.New("autotls: NewListener needs at least one domain")
	}
	for _, d := range domains {
		if _, ok := parseIPName(d); ok {
			return nil, fmt.Errorf("%w: %q is an IP address: use a Manager with AllowIPCertificates", ErrInvalidName, d)
		}
	}
	hosts, err := NewHostWhitelist(domains...)
	if err != nil {
		return nil, err
	}
	m := &Manager{Hosts: hosts, AcceptTOS: true}
	ln, err := m.Listen("tcp", ":443") // Validate first
	if err != nil {
		m.Close()
		return nil, err
	}
	return &managedListener{Listener: ln, m: m}, nil
}

type managedListener struct {
	net.Listener
	m    *Manager
	once sync.Once
}

func (l *managedListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() { l.m.Close() })
	return err
}
