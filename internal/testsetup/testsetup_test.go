package testsetup_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
)

// TestAuthorityChain: a leaf of an intermediate is sent with the
// intermediate and verifies against the root's pool alone; a self-signed
// certificate and Template's names are what they say.
func TestAuthorityChain(t *testing.T) {
	t.Parallel()
	now := time.Now()
	root := testsetup.NewAuthority(t, "test root")
	inter := root.Intermediate(t, "test intermediate")
	cert := inter.Issue(t, testsetup.Template(now.Add(-time.Hour), now.Add(time.Hour), "a.test", "127.0.0.1"))
	if got := len(cert.Certificate); got != 2 {
		t.Fatalf("chain length: got %d, want 2 (leaf and intermediate)", got)
	}
	if cert.Leaf.Subject.CommonName != "a.test" || len(cert.Leaf.DNSNames) != 1 || len(cert.Leaf.IPAddresses) != 1 {
		t.Errorf("leaf names: got CN %q, DNS %v, IP %v; want a.test, [a.test], [127.0.0.1]", cert.Leaf.Subject.CommonName, cert.Leaf.DNSNames, cert.Leaf.IPAddresses)
	}
	inters := x509.NewCertPool()
	inters.AddCert(inter.Cert)
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: "a.test", Roots: root.Pool(), Intermediates: inters}); err != nil {
		t.Errorf("leaf does not verify against the root: %v", err)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: "a.test", Roots: inter.Pool()}); err != nil {
		t.Errorf("leaf does not verify against the intermediate's pool: %v", err)
	}
	self := testsetup.SelfSigned(t, testsetup.Template(now.Add(-time.Hour), now.Add(time.Hour), "self.test"))
	if err := self.Leaf.CheckSignature(self.Leaf.SignatureAlgorithm, self.Leaf.RawTBSCertificate, self.Leaf.Signature); err != nil {
		t.Errorf("self-signed certificate: %v", err)
	}
	if self.Leaf.SerialNumber == nil || self.Leaf.SerialNumber.Sign() <= 0 {
		t.Errorf("serial number: got %v, want a random positive one", self.Leaf.SerialNumber)
	}
}

// TestServeCertificate: the served certificate is the one a client sees.
func TestServeCertificate(t *testing.T) {
	t.Parallel()
	now := time.Now()
	cert := testsetup.SelfSigned(t, testsetup.Template(now.Add(-time.Hour), now.Add(time.Hour), "served.test"))
	addr := testsetup.ServeCertificate(t, cert)
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.ConnectionState().PeerCertificates[0]; !got.Equal(cert.Leaf) {
		t.Errorf("served certificate: got %q, want %q", got.Subject.CommonName, cert.Leaf.Subject.CommonName)
	}
}

// TestManagerThroughChallenges: a Manager of the test CA obtains a
// certificate once Challenges answers for it, and the http-01 server
// answers 404 before any Manager is in use.
func TestManagerThroughChallenges(t *testing.T) {
	t.Parallel()
	ca := testsetup.CA(t, testpebble.Options{})
	ch := testsetup.NewChallenges(t, ca)
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(ca.HTTPPort()) + "/.well-known/acme-challenge/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("http-01 before Use: got %d, want 404", resp.StatusCode)
	}
	if _, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(ca.TLSPort())), &tls.Config{ServerName: "example.com", InsecureSkipVerify: true, NextProtos: []string{"acme-tls/1"}}); err == nil {
		t.Errorf("tls-alpn-01 before Use: the handshake succeeded, want it to fail")
	}
	m := testsetup.Manager(t, ca, nil, nil, "example.com")
	ch.Use(m)
	if err := m.Manage(testsetup.Context(t), "example.com"); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	c, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: "example.com"})
	if err != nil {
		t.Fatalf("GetCertificate: %v", err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: ca.RootPool(), Intermediates: intermediates(t, c)}); err != nil {
		t.Errorf("issued certificate does not verify against the CA: %v", err)
	}
}

// TestRegistered: the client has an account at the CA.
func TestRegistered(t *testing.T) {
	t.Parallel()
	ca := testsetup.CA(t, testpebble.Options{})
	c := testsetup.Registered(t, ca)
	a, err := c.GetAccount(testsetup.Context(t))
	if err != nil {
		t.Fatalf("GetAccount: %v", err)
	}
	if a.URL == "" || a.Status != "valid" {
		t.Errorf("account: got URL %q, status %q; want one, valid", a.URL, a.Status)
	}
}

func intermediates(t *testing.T, c *tls.Certificate) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	for _, der := range c.Certificate[1:] {
		ic, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		p.AddCert(ic)
	}
	return p
}

// TestResolver: the resolver asks the test's DNS server, which answers
// A 127.0.0.1 for any name and the TXT records it was given.
func TestResolver(t *testing.T) {
	t.Parallel()
	d := testsetup.DNS(t, "example.com")
	d.AddTXT("_acme-challenge.example.com", "token")
	r := testsetup.Resolver(d)
	txt, err := r.LookupTXT(testsetup.Context(t), "_acme-challenge.example.com")
	if err != nil || len(txt) != 1 || txt[0] != "token" {
		t.Errorf("LookupTXT: got %q, %v; want [token]", txt, err)
	}
	addrs, err := r.LookupHost(testsetup.Context(t), "anything.example.com")
	if err != nil || len(addrs) != 1 || addrs[0] != "127.0.0.1" {
		t.Errorf("LookupHost: got %v, %v; want [127.0.0.1]", addrs, err)
	}
}
