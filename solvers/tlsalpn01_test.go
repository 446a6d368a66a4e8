package solvers_test

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/solvers"
)

var oidACMEIdentifier = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}

func alpnChallenge(id acme.Identifier) acme.Challenge {
	return acme.Challenge{
		Type:             acme.ChallengeTLSALPN01,
		URL:              "https://ca.test/chal/2",
		Token:            testToken,
		Identifier:       id,
		KeyAuthorization: testKeyAut,
	}
}

// checkChallengeCert checks a certificate against RFC 8737, section 3.
func checkChallengeCert(t *testing.T, cert *tls.Certificate, id acme.Identifier) {
	t.Helper()
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatalf("parsing the challenge certificate: %v", err)
	}
	switch id.Type {
	case acme.IdentifierDNS:
		if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != id.Value || len(leaf.IPAddresses) != 0 {
			t.Errorf("SANs: got DNS %q IP %v, want exactly DNS %q", leaf.DNSNames, leaf.IPAddresses, id.Value)
		}
	case acme.IdentifierIP:
		want := net.ParseIP(id.Value)
		if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(want) || len(leaf.DNSNames) != 0 {
			t.Errorf("SANs: got DNS %q IP %v, want exactly IP %v", leaf.DNSNames, leaf.IPAddresses, want)
		}
	}
	var ext *pkix.Extension
	for i := range leaf.Extensions {
		if leaf.Extensions[i].Id.Equal(oidACMEIdentifier) {
			ext = &leaf.Extensions[i]
		}
	}
	if ext == nil {
		t.Fatal("no acmeIdentifier extension")
	}
	if !ext.Critical {
		t.Error("acmeIdentifier extension is not critical")
	}
	var got []byte
	if _, err := asn1.Unmarshal(ext.Value, &got); err != nil {
		t.Fatalf("acmeIdentifier value: %v", err)
	}
	if want := sha256.Sum256([]byte(testKeyAut)); !bytes.Equal(got, want[:]) {
		t.Errorf("acmeIdentifier value: got %x, want %x", got, want)
	}
}

func TestTLSALPN01Certificate(t *testing.T) {
	tests := []struct {
		name string
		id   acme.Identifier
		sni  string
	}{
		{"DNS name", dnsID("example.com"), "example.com"},
		{"DNS name, SNI in upper case", dnsID("example.com"), "EXAMPLE.COM"},
		{"IPv4", ipID("192.0.2.7"), "7.2.0.192.in-addr.arpa"},
		{"IPv6", ipID("2001:db8::1"), "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &solvers.TLSALPN01{}
			if err := s.Present(t.Context(), alpnChallenge(tt.id)); err != nil {
				t.Fatalf("Present: %v", err)
			}
			cert, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: tt.sni, SupportedProtos: []string{acme.ALPNProto}})
			if err != nil || cert == nil {
				t.Fatalf("GetCertificate: got %v, %v, want a certificate", cert, err)
			}
			checkChallengeCert(t, cert, tt.id)

			// A second presentation gets a fresh key.
			s2 := &solvers.TLSALPN01{}
			if err := s2.Present(t.Context(), alpnChallenge(tt.id)); err != nil {
				t.Fatalf("Present: %v", err)
			}
			cert2, _ := s2.GetCertificate(&tls.ClientHelloInfo{ServerName: tt.sni, SupportedProtos: []string{acme.ALPNProto}})
			if cert2.PrivateKey.(interface{ Equal(crypto.PrivateKey) bool }).Equal(cert.PrivateKey) {
				t.Error("two presentations share a key")
			}
		})
	}
}

func TestTLSALPN01Hellos(t *testing.T) {
	regular := &tls.Certificate{Certificate: [][]byte{[]byte("regular")}}
	tests := []struct {
		name    string
		sni     string
		protos  []string
		cleaned bool // CleanUp before the hello
		want    string
	}{
		{"challenge", "example.com", []string{"acme-tls/1"}, false, "challenge"},
		{"challenge, trailing dot", "example.com.", []string{"acme-tls/1"}, false, "challenge"},
		{"h2", "example.com", []string{"h2"}, false, "regular"},
		{"http/1.1", "example.com", []string{"http/1.1"}, false, "regular"},
		{"h2 and http/1.1", "example.com", []string{"h2", "http/1.1"}, false, "regular"},
		{"no ALPN", "example.com", nil, false, "regular"},
		{"acme-tls/1 and h2", "example.com", []string{"acme-tls/1", "h2"}, false, "regular"},
		{"h2 and acme-tls/1", "example.com", []string{"h2", "acme-tls/1"}, false, "regular"},
		{"acme-tls/1 in upper case", "example.com", []string{"ACME-TLS/1"}, false, "regular"},
		{"SNI for another name", "other.example.com", []string{"acme-tls/1"}, false, "error"},
		{"SNI for a parent", "com", []string{"acme-tls/1"}, false, "error"},
		{"SNI in upper case", "EXAMPLE.Com", []string{"acme-tls/1"}, false, "challenge"},
		{"no SNI", "", []string{"acme-tls/1"}, false, "error"},
		{"after CleanUp", "example.com", []string{"acme-tls/1"}, true, "error"},
		{"regular after CleanUp", "example.com", []string{"h2"}, true, "regular"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &solvers.TLSALPN01{}
			chal := alpnChallenge(dnsID("example.com"))
			if err := s.Present(t.Context(), chal); err != nil {
				t.Fatalf("Present: %v", err)
			}
			if tt.cleaned {
				if err := s.CleanUp(t.Context(), chal); err != nil {
					t.Fatalf("CleanUp: %v", err)
				}
			}
			hello := &tls.ClientHelloInfo{ServerName: tt.sni, SupportedProtos: tt.protos}
			hook := s.Wrap(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return regular, nil })
			cert, err := hook(hello)
			got := "challenge"
			switch {
			case err != nil:
				got = "error"
				if !errors.Is(err, solvers.ErrNoChallenge) {
					t.Errorf("error: got %v, want %v", err, solvers.ErrNoChallenge)
				}
			case cert == regular:
				got = "regular"
			}
			if got != tt.want {
				t.Fatalf("Wrap hook: got %s certificate, want %s", got, tt.want)
			}
			// GetCertificate alone defers to Certificates with (nil, nil).
			cert, err = s.GetCertificate(hello)
			if tt.want == "regular" && (cert != nil || err != nil) {
				t.Errorf("GetCertificate: got %v, %v, want nil, nil", cert, err)
			}
		})
	}
}

// A Unicode SNI whose lower case is the identifier (the Kelvin sign is
// "k" in lower case) names no challenge.
func TestTLSALPN01UnicodeSNI(t *testing.T) {
	s := &solvers.TLSALPN01{}
	if err := s.Present(t.Context(), alpnChallenge(dnsID("kelvin.example.com"))); err != nil {
		t.Fatalf("Present: %v", err)
	}
	for _, sni := range []string{"\u212aelvin.example.com", "\u212aELVIN.example.com"} {
		cert, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: sni, SupportedProtos: []string{"acme-tls/1"}})
		if cert != nil || !errors.Is(err, solvers.ErrNoChallenge) {
			t.Errorf("SNI %q: got %v, %v, want %v", sni, cert != nil, err, solvers.ErrNoChallenge)
		}
	}
	if cert, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: "KELVIN.example.com", SupportedProtos: []string{"acme-tls/1"}}); cert == nil || err != nil {
		t.Errorf("SNI in upper case: got %v, %v, want the challenge certificate", cert != nil, err)
	}
}

// TestTLSALPN01Handshakes runs real handshakes on a listener that also
// serves an ordinary certificate, and on a listener of the solver's own.
func TestTLSALPN01Handshakes(t *testing.T) {
	s := &solvers.TLSALPN01{}
	if err := s.Present(t.Context(), alpnChallenge(dnsID("example.com"))); err != nil {
		t.Fatalf("Present: %v", err)
	}
	// An application certificate from an unrelated self-signed challenge
	// certificate is as good as any for this test.
	appCert, err := acme.TLSALPN01Certificate(acme.Challenge{Identifier: dnsID("example.com"), KeyAuthorization: "app"})
	if err != nil {
		t.Fatal(err)
	}
	shared := &tls.Config{Certificates: []tls.Certificate{*appCert}, NextProtos: []string{"h2", "http/1.1"}}
	shared.GetCertificate = s.Wrap(shared.GetCertificate)
	shared.NextProtos = append(shared.NextProtos, acme.ALPNProto)

	tests := []struct {
		name      string
		cfg       *tls.Config
		protos    []string
		wantProto string // "" with wantErr
		wantErr   bool
		wantChal  bool
	}{
		{"shared config, challenge", shared, []string{acme.ALPNProto}, acme.ALPNProto, false, true},
		{"shared config, h2", shared, []string{"h2"}, "h2", false, false},
		{"shared config, h2 and acme-tls/1", shared, []string{"h2", acme.ALPNProto}, "h2", false, false},
		{"own listener, challenge", s.TLSConfig(), []string{acme.ALPNProto}, acme.ALPNProto, false, true},
		{"own listener, h2", s.TLSConfig(), []string{"h2"}, "", true, false},
		{"own listener, http/1.1", s.TLSConfig(), []string{"http/1.1"}, "", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln := tls.NewListener(testsetup.Listen(t, "127.0.0.1:0"), tt.cfg)
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_ = c.(*tls.Conn).Handshake()
			}()
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(),
				&tls.Config{ServerName: "example.com", NextProtos: tt.protos, InsecureSkipVerify: true})
			if tt.wantErr {
				if err == nil {
					conn.Close()
					t.Fatal("handshake succeeded, want it refused")
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			defer conn.Close()
			cs := conn.ConnectionState()
			if cs.NegotiatedProtocol != tt.wantProto {
				t.Errorf("protocol: got %q, want %q", cs.NegotiatedProtocol, tt.wantProto)
			}
			isChal := false
			for _, e := range cs.PeerCertificates[0].Extensions {
				if e.Id.Equal(oidACMEIdentifier) && bytes.Contains(e.Value, func() []byte { s := sha256.Sum256([]byte(testKeyAut)); return s[:] }()) {
					isChal = true
				}
			}
			if isChal != tt.wantChal {
				t.Errorf("got the challenge certificate: %v, want %v", isChal, tt.wantChal)
			}
		})
	}
}

// TestTLSALPN01Pebble issues certificates with real tls-alpn-01 validation.
func TestTLSALPN01Pebble(t *testing.T) {
	tests := []struct {
		name   string
		ids    []acme.Identifier
		shared bool // inside an application's tls.Config
	}{
		{"own listener", acme.DNSNames("alpn.example.com"), false},
		{"inside an application config", acme.DNSNames("a.alpn.example.com", "b.alpn.example.com"), true},
		{"IP identifier", acme.IPAddresses(netip.MustParseAddr("127.0.0.1")), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ca := newCA(t, testpebble.Options{})
			s := &solvers.TLSALPN01{}
			cfg := s.TLSConfig()
			if tt.shared {
				app, err := acme.TLSALPN01Certificate(acme.Challenge{Identifier: dnsID("app.example.com"), KeyAuthorization: "app"})
				if err != nil {
					t.Fatal(err)
				}
				cfg = &tls.Config{Certificates: []tls.Certificate{*app}, NextProtos: []string{"h2", "http/1.1", acme.ALPNProto}}
				cfg.GetCertificate = s.Wrap(nil)
			}
			testsetup.ServeTLS(t, "127.0.0.1:"+strconv.Itoa(ca.TLSPort()), cfg)
			c := newClient(t, ca)
			if _, err := obtain(t, ca, c, acme.ChallengeTLSALPN01, s, tt.ids); err != nil {
				t.Fatalf("Obtain: %v", err)
			}
			// Cleaned up: the challenge is no longer served.
			for _, id := range tt.ids {
				if _, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: id.Value, SupportedProtos: []string{acme.ALPNProto}}); !errors.Is(err, solvers.ErrNoChallenge) {
					t.Errorf("after Obtain, %s: got %v, want %v", id.Value, err, solvers.ErrNoChallenge)
				}
			}
		})
	}
}
