package watchdog_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// testCA is a local root with one intermediate, which issues the leaves.
type testCA struct {
	root, inter       *x509.Certificate
	rootKey, interKey *ecdsa.PrivateKey
	pool              *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	now := time.Now()
	rootKey := newKey(t)
	root := sign(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "watchdog test root"},
		NotBefore:             now.Add(-365 * 24 * time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}, nil, rootKey, rootKey)
	interKey := newKey(t)
	inter := sign(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "watchdog test intermediate"},
		NotBefore:             now.Add(-365 * 24 * time.Hour),
		NotAfter:              now.Add(5 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}, root, rootKey, interKey)
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return &testCA{root: root, inter: inter, rootKey: rootKey, interKey: interKey, pool: pool}
}

// leaf issues a certificate for names (DNS names or IP addresses) valid
// from nb to na, served with the intermediate.
func (ca *testCA) leaf(t testing.TB, nb, na time.Time, names ...string) tls.Certificate {
	t.Helper()
	key := newKey(t)
	c := sign(t, leafTemplate(nb, na, names), ca.inter, ca.interKey, key)
	return tls.Certificate{Certificate: [][]byte{c.Raw, ca.inter.Raw}, PrivateKey: key, Leaf: c}
}

// selfSigned returns a certificate for names that signs itself.
func selfSigned(t testing.TB, nb, na time.Time, names ...string) tls.Certificate {
	t.Helper()
	key := newKey(t)
	c := sign(t, leafTemplate(nb, na, names), nil, key, key)
	return tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: key, Leaf: c}
}

func leafTemplate(nb, na time.Time, names []string) *x509.Certificate {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: names[0]},
		NotBefore:   nb,
		NotAfter:    na,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	return tmpl
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sign creates tmpl with key's public key, signed by parent (nil: itself)
// with parentKey.
func sign(t testing.TB, tmpl, parent *x509.Certificate, parentKey, key *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serveTLS starts a TLS server on loopback that completes each handshake
// with cfg and closes the connection, and returns its address.
func serveTLS(t testing.TB, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := tls.NewListener(ln, cfg)
	go testpebble.ServeHandshakes(tl)
	t.Cleanup(func() { tl.Close() })
	return ln.Addr().String()
}

// serveCert serves cert on a loopback listener.
func serveCert(t testing.TB, cert tls.Certificate) string {
	t.Helper()
	return serveTLS(t, &tls.Config{Certificates: []tls.Certificate{cert}})
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

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

const day = 24 * time.Hour
