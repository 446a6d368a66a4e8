// Command local obtains a certificate from an in-process test CA (Let's
// Encrypt's Pebble) with real http-01 validation on loopback, and prints it.
// It needs no network and no root.
//
//	go run ./examples/local
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
)

func main() {
	if err := run(); err != nil {
		log.Printf("local: %v", err)
		os.Exit(1)
	}
}

// httpTokens answers http-01 challenges from memory.
type httpTokens struct{ m sync.Map }

func (s *httpTokens) Present(_ context.Context, ch acme.Challenge) error {
	s.m.Store(ch.HTTP01ResourcePath(), ch.KeyAuthorization)
	return nil
}

func (s *httpTokens) CleanUp(_ context.Context, ch acme.Challenge) error {
	s.m.Delete(ch.HTTP01ResourcePath())
	return nil
}

func (s *httpTokens) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if ka, ok := s.m.Load(r.URL.Path); ok {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, ka)
		return
	}
	http.NotFound(w, r)
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	ca, err := testpebble.New(testpebble.Options{})
	if err != nil {
		return err
	}
	defer ca.Close()

	tokens := new(httpTokens)
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(ca.HTTPPort())))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: tokens, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	accountKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	c := &acme.Client{DirectoryURL: ca.DirectoryURL(), Key: accountKey, HTTPClient: ca.HTTPClient()}
	if _, err := c.Register(ctx, acme.Account{TermsOfServiceAgreed: true}); err != nil {
		return err
	}
	certKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	start := time.Now()
	cert, err := c.Obtain(ctx, acme.ObtainRequest{
		Identifiers: acme.DNSNames("local.tlsmint.test"),
		CertKey:     certKey,
		Solvers:     map[string]acme.Solver{acme.ChallengeHTTP01: tokens},
	})
	if err != nil {
		return err
	}
	leaf := cert.Leaf()
	fmt.Printf("obtained in %v\n", time.Since(start).Round(time.Millisecond))
	fmt.Printf("names:   %v\n", leaf.DNSNames)
	fmt.Printf("issuer:  %s\n", leaf.Issuer.CommonName)
	fmt.Printf("expires: %s\n", leaf.NotAfter.Format(time.RFC3339))
	fmt.Printf("%s", cert.Chain.PEM)
	return nil
}
