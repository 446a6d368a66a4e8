package relay_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/relay"
	"github.com/tlsmint/tlsmint/solvers"
	"github.com/tlsmint/tlsmint/storage"
)

// Example runs a relay in front of the in-process test CA and obtains a
// certificate through it with tlsmint's client, as any ACME client would:
// registered with an EAB key of a tenant, the name's http-01 validated
// by the relay, the certificate obtained upstream with the client's CSR.
func Example() {
	ctx := context.Background()
	ca, err := testpebble.New(testpebble.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer ca.Close()

	// The relay proves control upstream with its own http-01 solver, on
	// the port the test CA validates.
	upstreamSolver := &solvers.HTTP01{}
	serve("127.0.0.1:"+strconv.Itoa(ca.HTTPPort()), upstreamSolver)
	// The client answers the relay's own validation here.
	clientSolver := &solvers.HTTP01{}
	clientPort := serve("127.0.0.1:0", clientSolver)

	relayKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srv := &relay.Server{
		Storage: storage.NewMemory(),
		Upstreams: []*relay.Upstream{{
			Client:  &acme.Client{DirectoryURL: ca.DirectoryURL(), Key: relayKey, HTTPClient: ca.HTTPClient()},
			Account: acme.Account{TermsOfServiceAgreed: true},
			Solvers: map[string]acme.Solver{acme.ChallengeHTTP01: upstreamSolver},
		}},
		// In production: the zero Validator (ports 80 and 443, the
		// system's resolver). Here: the client's port, every name on
		// 127.0.0.1 through the test CA's DNS server.
		Validator: &relay.Validator{HTTPPort: clientPort, Resolver: &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return new(net.Dialer).DialContext(ctx, "tcp", ca.DNS().Addr())
		}}},
	}
	defer srv.Close()
	ts := httptest.NewTLSServer(srv)
	defer ts.Close()

	// The administrator creates a tenant and hands its team an EAB key.
	// Its names are on loopback here, a reserved range the validator
	// connects to only for a tenant allowed it.
	pol := relay.Policy{Names: []string{"example.com"}, ValidationTargets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	if err := srv.PutTenant(ctx, relay.Tenant{ID: "web", Policy: pol}); err != nil {
		log.Fatal(err)
	}
	eab, err := srv.NewEABKey(ctx, "web")
	if err != nil {
		log.Fatal(err)
	}

	// The team's client talks to the relay as to any CA.
	clientKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	client := &acme.Client{DirectoryURL: ts.URL + "/directory", Key: clientKey, HTTPClient: ts.Client()}
	if _, err := client.Register(ctx, acme.Account{ExternalAccountBinding: eab}); err != nil {
		log.Fatal(err)
	}
	certKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert, err := client.Obtain(ctx, acme.ObtainRequest{
		Identifiers: acme.DNSNames("www.example.com"),
		CertKey:     certKey,
		Solvers:     map[string]acme.Solver{acme.ChallengeHTTP01: clientSolver},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cert.Leaf().DNSNames, cert.Leaf().Issuer.CommonName != "")
	// Output: [www.example.com] true
}

// serve serves h on addr in the background and returns the port.
func serve(addr string, h http.Handler) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	go http.Serve(ln, h)
	return ln.Addr().(*net.TCPAddr).Port
}

// ExampleServer_AdminHandler serves the ACME API publicly and the
// administration API on a loopback port only.
func ExampleServer_AdminHandler() {
	srv := &relay.Server{
		Storage:    storage.Dir("/var/lib/tlsmint-relay"),
		BaseURL:    "https://acme.internal.example",
		AdminToken: "a long random token",
		Upstreams:  []*relay.Upstream{ /* … */ },
	}
	defer srv.Close()
	go func() { log.Fatal(http.ListenAndServe("127.0.0.1:8081", srv.AdminHandler())) }()
	log.Fatal(http.ListenAndServeTLS(":443", "relay.crt", "relay.key", srv))
}

// ExampleServer_Routes configures replicas of a relay on one PostgreSQL
// storage behind a load balancer: shared nonces, IP addresses to Let's
// Encrypt's shortlived profile, the names of a legacy zone to a private CA
// first. It compiles but does not run (it needs the CAs and a database).
func ExampleServer_Routes() {
	var (
		store      storage.Storage // storage/postgres, shared by every replica
		le, inside *relay.Upstream // Name "letsencrypt" and "private"
	)
	srv := &relay.Server{
		Storage:      store,
		BaseURL:      "https://acme.internal.example",
		Upstreams:    []*relay.Upstream{le, inside},
		SharedNonces: true, // any replica accepts any replica's nonce, once
		Routes: []relay.Route{
			{IPRanges: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Upstreams: []string{"letsencrypt"}, Profile: "shortlived"},
			{Names: []string{"legacy.example.com"}, Upstreams: []string{"private", "letsencrypt"}},
		},
	}
	if err := srv.Validate(); err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	log.Fatal(http.ListenAndServeTLS(":443", "relay.crt", "relay.key", srv))
}
