package acme_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"log"
	"net/http"
	"sync"

	"github.com/tlsmint/tlsmint/acme"
)

// tokens is a minimal http-01 solver: it keeps key authorizations in a map
// that an HTTP handler on port 80 serves.
type tokens struct{ m sync.Map }

func (s *tokens) Present(_ context.Context, ch acme.Challenge) error {
	s.m.Store(ch.HTTP01ResourcePath(), ch.KeyAuthorization)
	return nil
}

func (s *tokens) CleanUp(_ context.Context, ch acme.Challenge) error {
	s.m.Delete(ch.HTTP01ResourcePath())
	return nil
}

func (s *tokens) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if ka, ok := s.m.Load(r.URL.Path); ok {
		fmt.Fprint(w, ka)
		return
	}
	http.NotFound(w, r)
}

// Obtain a certificate in one call with Client.Obtain.
func ExampleClient_Obtain() {
	ctx := context.Background()
	accountKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c := &acme.Client{DirectoryURL: acme.LetsEncryptStaging, Key: accountKey}
	if _, err := c.Register(ctx, acme.Account{TermsOfServiceAgreed: true, Contact: []string{"mailto:ops@example.com"}}); err != nil {
		log.Fatal(err)
	}

	solver := new(tokens)
	go http.ListenAndServe(":80", solver)

	certKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert, err := c.Obtain(ctx, acme.ObtainRequest{
		Identifiers: acme.DNSNames("example.com", "www.example.com"),
		CertKey:     certKey,
		Solvers:     map[string]acme.Solver{acme.ChallengeHTTP01: solver},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cert.Leaf().DNSNames, cert.Leaf().NotAfter)
}

// The low-level flow, one RFC 8555 request at a time.
func ExampleClient_NewOrder() {
	ctx := context.Background()
	accountKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c := &acme.Client{DirectoryURL: acme.LetsEncryptStaging, Key: accountKey}
	if _, err := c.Register(ctx, acme.Account{TermsOfServiceAgreed: true}); err != nil {
		log.Fatal(err)
	}
	solver := new(tokens)
	go http.ListenAndServe(":80", solver)

	order, err := c.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("example.com")})
	if err != nil {
		log.Fatal(err)
	}
	for _, u := range order.Authorizations {
		authz, err := c.GetAuthorization(ctx, u)
		if err != nil {
			log.Fatal(err)
		}
		for _, ch := range authz.Challenges {
			if ch.Type != acme.ChallengeHTTP01 {
				continue
			}
			solver.Present(ctx, ch)
			defer solver.CleanUp(ctx, ch)
			if _, err := c.AcceptChallenge(ctx, ch); err != nil {
				log.Fatal(err)
			}
		}
		if _, err := c.WaitAuthorization(ctx, u); err != nil {
			log.Fatal(err)
		}
	}
	certKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := acme.CSR(certKey, order.Identifiers)
	if err != nil {
		log.Fatal(err)
	}
	order, err = c.FinalizeOrder(ctx, order, csr)
	if err != nil {
		log.Fatal(err)
	}
	chains, err := c.FetchCertificate(ctx, order.Certificate)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s", chains[0].PEM)
}

// Ask the CA when to renew (RFC 9773).
func ExampleClient_RenewalInfo() {
	ctx := context.Background()
	var c *acme.Client   // a registered client
	var cert *acme.Chain // a certificate obtained earlier
	ri, err := c.RenewalInfo(ctx, cert.Leaf())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("renew between", ri.SuggestedWindow.Start, "and", ri.SuggestedWindow.End, "; ask again in", ri.RetryAfter)
}
