package solvers_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/solvers"
	"github.com/tlsmint/tlsmint/solvers/dns01test"
	"github.com/tlsmint/tlsmint/storage"
)

// An http-01 solver in front of an application on port 80.
func ExampleHTTP01_Middleware() {
	h := &solvers.HTTP01{Logger: slog.Default()}
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://"+r.Host+r.URL.RequestURI(), http.StatusMovedPermanently)
	})
	go func() { log.Fatal(http.ListenAndServe(":80", h.Middleware(app))) }()

	accountKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	certKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	client := &acme.Client{DirectoryURL: acme.LetsEncryptStaging, Key: accountKey}
	ctx := context.Background()
	if _, err := client.Register(ctx, acme.Account{TermsOfServiceAgreed: true}); err != nil {
		log.Fatal(err)
	}
	cert, err := client.Obtain(ctx, acme.ObtainRequest{
		Identifiers: acme.DNSNames("example.com", "www.example.com"),
		CertKey:     certKey,
		Solvers:     map[string]acme.Solver{acme.ChallengeHTTP01: h},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cert.Leaf().DNSNames)
}

// A fleet behind a load balancer: every node serves the tokens any node
// presented, from shared storage (any storage.Storage, such as the file
// backend on a shared volume or the PostgreSQL backend).
func ExampleStorageTokens() {
	shared := storage.Dir("/var/lib/tlsmint")
	h := &solvers.HTTP01{Store: solvers.StorageTokens{Storage: shared}}
	http.Handle(solvers.HTTP01PathPrefix, h)
	log.Fatal(http.ListenAndServe(":80", nil))
}

// Embedding the http-01 check in a server with its own routing.
func ExampleHTTP01_Handle() {
	h := &solvers.HTTP01{}
	srv := &http.Server{
		Addr: ":80",
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if h.Handle(w, r) {
				return
			}
			fmt.Fprintln(w, "hello")
		}),
	}
	log.Fatal(srv.ListenAndServe())
}

// tls-alpn-01 inside the application's own TLS configuration: challenge
// handshakes get the challenge certificate, all others the application's.
func ExampleTLSALPN01_Wrap() {
	s := &solvers.TLSALPN01{}
	appCert, err := tls.LoadX509KeyPair("cert.pem", "key.pem")
	if err != nil {
		log.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{appCert}, NextProtos: []string{"h2", "http/1.1"}}
	cfg.GetCertificate = s.Wrap(cfg.GetCertificate)
	cfg.NextProtos = append(cfg.NextProtos, acme.ALPNProto)
	srv := &http.Server{Addr: ":443", TLSConfig: cfg}
	go func() { log.Fatal(srv.ListenAndServeTLS("", "")) }()
	// Pass s to Obtain as the acme.ChallengeTLSALPN01 solver.
}

// tls-alpn-01 on a listener of its own, which fails every handshake that
// is not a challenge.
func ExampleTLSALPN01_TLSConfig() {
	s := &solvers.TLSALPN01{}
	ln, err := tls.Listen("tcp", ":443", s.TLSConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				_ = conn.(*tls.Conn).Handshake()
			}()
		}
	}()
	// Pass s to Obtain as the acme.ChallengeTLSALPN01 solver.
}

// A wildcard certificate with dns-01, here against the in-process test CA
// and its mock DNS server; in production, Provider is a libdns provider
// for the DNS host (github.com/libdns/cloudflare, …) and Resolvers and
// NameserverPort stay zero.
func ExampleDNS01() {
	ca, err := testpebble.New(testpebble.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer ca.Close()
	ca.DNS().AddZone("example.com")
	_, port, _ := net.SplitHostPort(ca.DNS().Addr())
	nsPort, _ := strconv.Atoi(port)

	d := &solvers.DNS01{
		Provider:           &dns01test.Provider{Server: ca.DNS()},
		Resolvers:          []string{ca.DNS().Addr()},
		NameserverPort:     nsPort,
		PropagationTimeout: 10 * time.Second,
		PollInterval:       100 * time.Millisecond,
	}

	accountKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	certKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	client := &acme.Client{DirectoryURL: ca.DirectoryURL(), HTTPClient: ca.HTTPClient(), Key: accountKey}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := client.Register(ctx, acme.Account{TermsOfServiceAgreed: true}); err != nil {
		log.Fatal(err)
	}
	cert, err := client.Obtain(ctx, acme.ObtainRequest{
		Identifiers: acme.DNSNames("example.com", "*.example.com"),
		CertKey:     certKey,
		Solvers:     map[string]acme.Solver{acme.ChallengeDNS01: d},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(slices.Sorted(slices.Values(cert.Leaf().DNSNames)))
	fmt.Println(ca.DNS().TXT("_acme-challenge.example.com"))
	// Output:
	// [*.example.com example.com]
	// []
}

// Read-only dns-persist-01, here against the in-process test CA and its
// mock DNS server: without a Provider the solver only checks, and the
// first Obtain fails — before any challenge is accepted — with the record
// to create. Once the operator has published it, this and every later
// issuance validate with no DNS change. In production, Resolvers and
// NameserverPort stay zero.
func ExampleDNSPersist01() {
	ca, err := testpebble.New(testpebble.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer ca.Close()
	ca.DNS().AddZone("example.com")
	_, port, _ := net.SplitHostPort(ca.DNS().Addr())
	nsPort, _ := strconv.Atoi(port)

	// Wildcard: one record for the name and its wildcard, whichever
	// authorization comes first.
	d := &solvers.DNSPersist01{Wildcard: true, Resolvers: []string{ca.DNS().Addr()}, NameserverPort: nsPort}

	accountKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	client := &acme.Client{DirectoryURL: ca.DirectoryURL(), HTTPClient: ca.HTTPClient(), Key: accountKey}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := client.Register(ctx, acme.Account{TermsOfServiceAgreed: true}); err != nil {
		log.Fatal(err)
	}
	obtain := func() (*acme.Certificate, error) {
		certKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		return client.Obtain(ctx, acme.ObtainRequest{
			Identifiers: acme.DNSNames("example.com", "*.example.com"),
			CertKey:     certKey,
			Solvers:     map[string]acme.Solver{acme.ChallengeDNSPersist01: d},
		})
	}
	_, err = obtain()
	var missing *solvers.PersistRecordError
	if !errors.As(err, &missing) {
		log.Fatal(err)
	}
	fmt.Println("create:", missing.Name, "with policy=wildcard:", missing.Record.Wildcard)

	// The operator's part, once.
	ca.DNS().AddTXT(missing.Name, missing.Record.String())
	cert, err := obtain()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(slices.Sorted(slices.Values(cert.Leaf().DNSNames)))
	// Output:
	// create: _validation-persist.example.com with policy=wildcard: true
	// [*.example.com example.com]
}
