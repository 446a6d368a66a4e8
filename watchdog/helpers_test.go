package watchdog_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
)

// testCA is a local root with one intermediate, which issues the leaves.
type testCA struct {
	root, inter *testsetup.Authority
	pool        *x509.CertPool // the root's
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	root := testsetup.NewAuthority(t, "watchdog test root")
	return &testCA{root: root, inter: root.Intermediate(t, "watchdog test intermediate"), pool: root.Pool()}
}

// leaf issues a certificate for names (DNS names or IP addresses) valid
// from nb to na, served with the intermediate.
func (ca *testCA) leaf(t testing.TB, nb, na time.Time, names ...string) tls.Certificate {
	t.Helper()
	return ca.inter.Issue(t, testsetup.Template(nb, na, names...))
}

// selfSigned returns a certificate for names that signs itself.
func selfSigned(t testing.TB, nb, na time.Time, names ...string) tls.Certificate {
	t.Helper()
	return testsetup.SelfSigned(t, testsetup.Template(nb, na, names...))
}

// closedAddr returns a loopback address that refuses connections for the
// rest of the test.
func closedAddr(t testing.TB) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(testpebble.ClosedPort(t))
}

// serveRaw starts a loopback listener that hands each connection to fn
// (which must close it), and returns its address.
func serveRaw(t testing.TB, fn func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go fn(c)
		}
	}()
	return ln.Addr().String()
}

// pipeDialer returns a DialContext that serves every connection in memory
// with a TLS server using cfg; each server ends when the client closes.
func pipeDialer(cfg *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		client, server := net.Pipe()
		go func() {
			defer server.Close()
			tc := tls.Server(server, cfg)
			if tc.Handshake() != nil {
				return
			}
			io.Copy(io.Discard, tc)
		}()
		return client, nil
	}
}

// ctxT is testsetup.Context, under the name the tests use.
func ctxT(t testing.TB) context.Context { return testsetup.Context(t) }

const day = 24 * time.Hour
