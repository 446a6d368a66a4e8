package relay_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/relay"
	"github.com/tlsmint/tlsmint/solvers"
)

// fakeResolver answers every name with 127.0.0.1 except those in missing,
// and TXT records from txt.
type fakeResolver struct {
	missing map[string]bool
	txt     map[string][]string
}

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if f.missing[host] {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
}

func (f fakeResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	if v, ok := f.txt[name]; ok {
		return v, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

// allowLoopback lets a validation reach the tests' servers on loopback.
var allowLoopback = relay.AllowTargets(netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"))

const (
	vaToken   = "tok3nTOKENtok3nTOKENtok3nTOKENtok3nTOKENtok"
	vaKeyAuth = vaToken + ".thumbprint"
)

func dnsID(n string) acme.Identifier { return acme.Identifier{Type: acme.IdentifierDNS, Value: n} }

// wantVA fails unless err is nil (kind "") or a problem of kind.
func wantVA(t *testing.T, err error, kind string) {
	t.Helper()
	if kind == "" {
		if err != nil {
			t.Fatalf("validation failed: %v", err)
		}
		return
	}
	var p *acme.Problem
	if !errors.As(err, &p) {
		t.Fatalf("got %v, want a %s problem", err, kind)
	}
	if p.Type != "urn:ietf:params:acme:error:"+kind {
		t.Fatalf("got %s (%s), want %s", p.Type, p.Detail, kind)
	}
	if p.Identifier == nil {
		t.Fatal("the problem names no identifier")
	}
}

func TestValidateHTTP01(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	path := "/.well-known/acme-challenge/" + vaToken
	serve := func(p string, f http.HandlerFunc) { mux.HandleFunc(p, f) }
	var gotHost string
	serve("good.example.com"+path, func(w http.ResponseWriter, r *http.Request) { gotHost = r.Host; w.Write([]byte(vaKeyAuth + "\r\n")) })
	serve("wrong.example.com"+path, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("something else")) })
	serve("long.example.com"+path, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(strings.Repeat(vaKeyAuth, 100))) })
	serve("missing.example.com/", http.NotFound)
	serve("redirect.example.com"+path, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://good.example.com"+path, http.StatusFound)
	})
	serve("to-https.example.com"+path, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://good.example.com"+path, http.StatusFound)
	})
	serve("other-port.example.com"+path, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://good.example.com:8080"+path, http.StatusFound)
	})
	serve("loop.example.com"+path, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://loop.example.com"+path, http.StatusFound)
	})
	serve("ftp.example.com"+path, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "ftp://good.example.com"+path, http.StatusFound)
	})
	serve("slow.example.com"+path, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	serve("127.0.0.1"+path, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(vaKeyAuth)) })
	port := testsetup.ServeHTTP(t, "127.0.0.1:0", mux)
	tlsSrv := httptest.NewUnstartedServer(mux)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsSrv.Listener = ln
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	tlsPort := ln.Addr().(*net.TCPAddr).Port
	closed := closedPort(t)

	v := &relay.Validator{HTTPPort: port, TLSPort: tlsPort, Resolver: fakeResolver{missing: map[string]bool{"nxdomain.example.com": true}}, Timeout: 2 * time.Second}
	for _, tc := range []struct {
		name string
		id   acme.Identifier
		v    *relay.Validator
		kind string
	}{
		{"good", dnsID("good.example.com"), v, ""},
		{"IP address", acme.Identifier{Type: acme.IdentifierIP, Value: "127.0.0.1"}, v, ""},
		{"redirect", dnsID("redirect.example.com"), v, ""},
		{"redirect to https", dnsID("to-https.example.com"), v, ""},
		{"wrong body", dnsID("wrong.example.com"), v, "unauthorized"},
		{"body too long", dnsID("long.example.com"), v, "unauthorized"},
		{"404", dnsID("missing.example.com"), v, "unauthorized"},
		{"redirect to another port", dnsID("other-port.example.com"), v, "unauthorized"},
		{"redirect loop", dnsID("loop.example.com"), v, "unauthorized"},
		{"redirect to ftp", dnsID("ftp.example.com"), v, "unauthorized"},
		{"no such name", dnsID("nxdomain.example.com"), v, "dns"},
		{"slow", dnsID("slow.example.com"), &relay.Validator{HTTPPort: port, Resolver: v.Resolver, Timeout: 300 * time.Millisecond}, "connection"},
		{"refused", dnsID("good.example.com"), &relay.Validator{HTTPPort: closed, Resolver: v.Resolver, Timeout: 2 * time.Second}, "connection"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			wantVA(t, tc.v.Validate(ctxT(t), acme.ChallengeHTTP01, tc.id, vaToken, vaKeyAuth, allowLoopback), tc.kind)
		})
	}
	t.Run("body not echoed", func(t *testing.T) {
		err := v.Validate(ctxT(t), acme.ChallengeHTTP01, dnsID("wrong.example.com"), vaToken, vaKeyAuth, allowLoopback)
		if err == nil || strings.Contains(err.Error(), "something else") {
			t.Fatalf("got %v, want a failure that does not repeat the body", err)
		}
	})
	t.Run("host header", func(t *testing.T) {
		wantVA(t, v.Validate(ctxT(t), acme.ChallengeHTTP01, dnsID("good.example.com"), vaToken, vaKeyAuth, allowLoopback), "")
		if gotHost != "good.example.com" {
			t.Fatalf("Host = %q, want the identifier", gotHost)
		}
	})
}

// closedPort returns a loopback port that refuses connections for the
// rest of the test.
func closedPort(t *testing.T) int {
	t.Helper()
	return testpebble.ClosedPort(t)
}

// freePort returns a loopback port nothing listens on now, for a client
// under test to listen on.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return p
}

// alpnCert makes a tls-alpn-01 certificate with the given extension value
// and criticality, for name.
func alpnCert(t *testing.T, names []string, ips []net.IP, ext []byte, critical bool) tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: names, IPAddresses: ips,
	}
	if ext != nil {
		tmpl.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}, Critical: critical, Value: ext}}
	}
	return testsetup.SelfSigned(t, tmpl)
}

func TestValidateTLSALPN01(t *testing.T) {
	t.Parallel()
	sum := sha256.Sum256([]byte(vaKeyAuth))
	good, _ := asn1.Marshal(sum[:])
	bad, _ := asn1.Marshal(make([]byte, 32))
	solver := &solvers.TLSALPN01{}
	for _, id := range []acme.Identifier{dnsID("solver.example.com"), {Type: acme.IdentifierIP, Value: "127.0.0.1"}} {
		if err := solver.Present(ctxT(t), acme.Challenge{Type: acme.ChallengeTLSALPN01, Token: vaToken, KeyAuthorization: vaKeyAuth, Identifier: id}); err != nil {
			t.Fatal(err)
		}
	}
	certs := map[string]tls.Certificate{
		"noext.example.com":    alpnCert(t, []string{"noext.example.com"}, nil, nil, true),
		"noncrit.example.com":  alpnCert(t, []string{"noncrit.example.com"}, nil, good, false),
		"digest.example.com":   alpnCert(t, []string{"digest.example.com"}, nil, bad, true),
		"twonames.example.com": alpnCert(t, []string{"twonames.example.com", "other.example.com"}, nil, good, true),
		"garbage.example.com":  alpnCert(t, []string{"garbage.example.com"}, nil, []byte{0x04, 0x05, 1}, true),
	}
	cfg := &tls.Config{
		NextProtos: []string{"acme-tls/1"},
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c, ok := certs[h.ServerName]; ok {
				return &c, nil
			}
			return solver.TLSConfig().GetCertificate(h)
		},
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go testpebble.ServeHandshakes(ln)
	port := ln.Addr().(*net.TCPAddr).Port
	// A TLS server that does not speak acme-tls/1.
	plain := httptest.NewUnstartedServer(http.NotFoundHandler())
	plain.Config.ErrorLog = log.New(io.Discard, "", 0)
	plain.StartTLS()
	t.Cleanup(plain.Close)
	plainPort, _ := strconv.Atoi(plain.URL[strings.LastIndexByte(plain.URL, ':')+1:])
	httpOnly := testsetup.ServeHTTP(t, "127.0.0.1:0", http.NotFoundHandler())

	v := &relay.Validator{TLSPort: port, Resolver: fakeResolver{}, Timeout: 2 * time.Second}
	for _, tc := range []struct {
		name string
		id   acme.Identifier
		v    *relay.Validator
		kind string
	}{
		{"good", dnsID("solver.example.com"), v, ""},
		{"IP address, reverse SNI", acme.Identifier{Type: acme.IdentifierIP, Value: "127.0.0.1"}, v, ""},
		{"no extension", dnsID("noext.example.com"), v, "unauthorized"},
		{"not critical", dnsID("noncrit.example.com"), v, "unauthorized"},
		{"wrong digest", dnsID("digest.example.com"), v, "unauthorized"},
		{"two names", dnsID("twonames.example.com"), v, "unauthorized"},
		{"malformed extension", dnsID("garbage.example.com"), v, "unauthorized"},
		{"no certificate for the name", dnsID("unknown.example.com"), v, "tls"},
		{"no acme-tls/1", dnsID("solver.example.com"), &relay.Validator{TLSPort: plainPort, Resolver: fakeResolver{}, Timeout: 2 * time.Second}, "tls"},
		{"not TLS", dnsID("solver.example.com"), &relay.Validator{TLSPort: httpOnly, Resolver: fakeResolver{}, Timeout: 2 * time.Second}, "tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			wantVA(t, tc.v.Validate(ctxT(t), acme.ChallengeTLSALPN01, tc.id, vaToken, vaKeyAuth, allowLoopback), tc.kind)
		})
	}
}

func TestValidateDNS01(t *testing.T) {
	t.Parallel()
	dns := testsetup.DNS(t)
	sum := sha256.Sum256([]byte(vaKeyAuth))
	value := b64.EncodeToString(sum[:])
	dns.AddTXT("_acme-challenge.good.example.com", "unrelated")
	dns.AddTXT("_acme-challenge.good.example.com", value)
	dns.AddTXT("_acme-challenge.wrong.example.com", "not it")
	dns.SetCNAME("_acme-challenge.delegated.example.com", "_acme-challenge.good.example.com")
	res := testsetup.Resolver(dns)
	v := &relay.Validator{Resolver: res, Timeout: 2 * time.Second}
	for _, tc := range []struct {
		name string
		id   acme.Identifier
		kind string
	}{
		{"good", dnsID("good.example.com"), ""},
		{"CNAME delegation", dnsID("delegated.example.com"), ""},
		{"wrong value", dnsID("wrong.example.com"), "unauthorized"},
		{"no record", dnsID("none.example.com"), "unauthorized"},
		{"IP address", acme.Identifier{Type: acme.IdentifierIP, Value: "127.0.0.1"}, "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantVA(t, v.Validate(ctxT(t), acme.ChallengeDNS01, tc.id, vaToken, vaKeyAuth), tc.kind)
		})
	}
	wantVA(t, v.Validate(ctxT(t), "http-02", dnsID("good.example.com"), vaToken, vaKeyAuth), "malformed")
}
