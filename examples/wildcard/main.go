// Command wildcard obtains one certificate for *.DOMAIN and one for DOMAIN
// with dns-01, through a libdns provider (github.com/libdns/...), and
// serves them over HTTPS. Wildcard names can only be validated with dns-01.
//
// Usage:
//
//	go run ./examples/wildcard -local                    # offline, against the in-process test CA
//	go run ./examples/wildcard -domain example.com -email ops@example.com
//
// For a real domain, replace the body of newProvider with your DNS host's
// libdns provider (and add its module to your go.mod). With -local the
// example runs against the in-process test CA and its mock DNS server,
// prints the names of the certificates served for a.example.com and
// example.com, and exits.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/solvers"
	"github.com/tlsmint/tlsmint/solvers/dns01test"
	"github.com/tlsmint/tlsmint/storage"
)

// newProvider returns the libdns provider that publishes the _acme-challenge
// TXT records in your zone. Replace its body; with github.com/libdns/cloudflare
// for instance it would be
//
//	return &cloudflare.Provider{APIToken: os.Getenv("CLOUDFLARE_API_TOKEN")}, nil
func newProvider() (solvers.DNSProvider, error) {
	return nil, errors.New("no DNS provider: replace newProvider in examples/wildcard/main.go with your libdns provider")
}

func main() {
	local := flag.Bool("local", false, "run offline against the in-process test CA, then exit")
	domain := flag.String("domain", "example.com", "the domain: certificates for *.DOMAIN and DOMAIN")
	email := flag.String("email", "", "contact address for the ACME account")
	flag.Parse()

	var err error
	if *local {
		err = runLocal(*domain)
	} else {
		err = runProduction(*domain, *email)
	}
	if err != nil {
		log.Fatalf("wildcard: %v", err)
	}
}

// runProduction orders from Let's Encrypt and serves HTTPS on :443.
func runProduction(domain, email string) error {
	provider, err := newProvider()
	if err != nil {
		return err
	}
	m := &autotls.Manager{
		DNSProvider: provider, // dns-01 with default propagation checks
		Email:       email,
		AcceptTOS:   true, // running this agrees to Let's Encrypt's terms of service
		// dns-01 for DOMAIN too: otherwise tls-alpn-01 is tried first,
		// and nothing listens on :443 yet while Manage runs.
		DisableHTTP01:    true,
		DisableTLSALPN01: true,
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Manage obtains both now and keeps them renewed; no Hosts policy is
	// needed for managed names, and *.DOMAIN covers every single label.
	if err := m.Manage(ctx, "*."+domain, domain); err != nil {
		return err
	}
	ln, err := m.Listen("tcp", ":443")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: hello(), ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(ln)
}

// runLocal does the same against the in-process test CA: its mock DNS server
// holds the zone, dns01test.Provider writes the TXT records into it, and
// the propagation check asks it too.
func runLocal(domain string) error {
	ca, err := testpebble.New(testpebble.Options{})
	if err != nil {
		return err
	}
	defer ca.Close()
	ca.DNS().AddZone(domain)
	_, port, err := net.SplitHostPort(ca.DNS().Addr())
	if err != nil {
		return err
	}
	nsPort, err := strconv.Atoi(port)
	if err != nil {
		return err
	}

	m := &autotls.Manager{
		DirectoryURL: ca.DirectoryURL(),
		HTTPClient:   ca.HTTPClient(),
		Storage:      storage.NewMemory(),
		AcceptTOS:    true, // agree to the CA's terms of service
		// A fully configured solver instead of DNSProvider: the mock
		// server is the resolver and the zone's nameserver.
		DNS01: &solvers.DNS01{
			Provider:           &dns01test.Provider{Server: ca.DNS()},
			Resolvers:          []string{ca.DNS().Addr()},
			NameserverPort:     nsPort,
			PropagationTimeout: 5 * time.Second,
			PollInterval:       20 * time.Millisecond,
		},
		// As above: every name through dns-01.
		DisableHTTP01:    true,
		DisableTLSALPN01: true,
	}
	defer m.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	if err := m.Manage(ctx, "*."+domain, domain); err != nil {
		return err
	}
	fmt.Printf("obtained *.%s and %s in %v (%d orders)\n", domain, domain,
		time.Since(start).Round(time.Millisecond), ca.Requests("newOrder"))

	ln, err := m.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: hello(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	for _, sni := range []string{"a." + domain, "b." + domain, domain} {
		d := tls.Dialer{Config: &tls.Config{ServerName: sni, RootCAs: ca.RootPool()}}
		c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			return fmt.Errorf("%s: %w", sni, err)
		}
		leaf := c.(*tls.Conn).ConnectionState().PeerCertificates[0]
		body, err := get(c, sni)
		c.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", sni, err)
		}
		fmt.Printf("%-15s -> certificate for %v, issuer %q, expires %s: %q\n",
			sni, leaf.DNSNames, leaf.Issuer.CommonName, leaf.NotAfter.Format(time.DateOnly), body)
	}
	return nil
}

// get sends one HTTP/1.1 request for / over c and returns the body.
func get(c net.Conn, host string) (string, error) {
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), err
}

func hello() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", r.Host)
	})
}
