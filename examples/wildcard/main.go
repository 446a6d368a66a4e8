// Command wildcard obtains one certificate for *.DOMAIN and one for DOMAIN
// with a DNS challenge and serves them over HTTPS: dns-01 through a libdns
// provider (github.com/libdns/...), or, with -persist, dns-persist-01 in
// read-only mode, where the server holds no DNS credentials at all and the
// operator publishes one TXT record once. Wildcard names can only be
// validated through DNS.
//
// Usage:
//
//	go run ./examples/wildcard -local                    # offline, against the in-process test CA
//	go run ./examples/wildcard -local -persist           # the same with read-only dns-persist-01
//	go run ./examples/wildcard -domain example.com -email ops@example.com
//	go run ./examples/wildcard -persist -domain example.com -email ops@example.com
//
// For a real domain with dns-01, replace the body of newProvider with your
// DNS host's libdns provider (and add its module to your go.mod). With
// -persist nothing needs replacing: the program prints the record to create
// (at _validation-persist.DOMAIN, naming Let's Encrypt and the account),
// and obtains both certificates as soon as it is published. With -local the
// example runs against the in-process test CA and its mock DNS server,
// prints the names of the certificates served for a.example.com and
// example.com, and exits; with -local -persist it also plays the operator,
// publishing the record it was asked for in the mock DNS server.
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
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/record"
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
	persist := flag.Bool("persist", false, "use read-only dns-persist-01: print the one DNS record to create, no DNS credentials")
	domain := flag.String("domain", "example.com", "the domain: certificates for *.DOMAIN and DOMAIN")
	email := flag.String("email", "", "contact address for the ACME account")
	flag.Parse()

	var err error
	switch {
	case *local:
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err = runLocal(ctx, os.Stdout, *domain, *persist)
	case *persist:
		err = runPersist(*domain, *email)
	default:
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
		DNS01:     &solvers.DNS01{Provider: provider}, // dns-01 with default propagation checks
		Issuers:   []autotls.Issuer{autotls.LetsEncrypt(email)},
		AcceptTOS: true, // running this agrees to Let's Encrypt's terms of service
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

// runPersist orders from Let's Encrypt with read-only dns-persist-01 and
// serves HTTPS on :443. No DNS credentials are needed: the Manager logs
// (and Manage returns) the record to create, checks the zone's
// authoritative nameservers for it, and obtains the certificates as soon
// as it is there. Every later renewal validates with that same record.
func runPersist(domain, email string) error {
	m := &autotls.Manager{
		DNSPersist01: &solvers.DNSPersist01{}, // no Provider: read-only
		Issuers:      []autotls.Issuer{autotls.LetsEncrypt(email)},
		AcceptTOS:    true, // running this agrees to Let's Encrypt's terms of service
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, nil)),
		// Only dns-persist-01, so that the program waits for the record.
		DisableHTTP01:    true,
		DisableTLSALPN01: true,
		OnEvent: func(e autotls.Event) {
			if e.Type == autotls.EventDNSRecordMissing {
				fmt.Printf("create this DNS record for %s:\n  %s\n", e.Name, e.DNSRecord)
			}
		},
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	err := m.Manage(ctx, "*."+domain, domain)
	if err != nil && !errors.Is(err, solvers.ErrPersistRecordMissing) {
		return err
	}
	// Until the record is published, handshakes fail; the Manager obtains
	// both certificates in the background as soon as it appears.
	ln, err := m.Listen("tcp", ":443")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: hello(), ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(ln)
}

// runLocal does the same against the in-process test CA: its mock DNS server
// holds the zone, dns01test.Provider writes the TXT records into it (or,
// with persist, the program writes the one record it is asked for, as the
// operator would), and the checks ask it too.
func runLocal(ctx context.Context, out io.Writer, domain string, persist bool) error {
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

	if persist {
		return runLocalPersist(ctx, out, ca, domain, nsPort)
	}
	m := &autotls.Manager{
		Issuers:    []autotls.Issuer{{DirectoryURL: ca.DirectoryURL()}},
		HTTPClient: ca.HTTPClient(),
		Storage:    storage.NewMemory(),
		AcceptTOS:  true, // agree to the CA's terms of service
		// A solver with more than a Provider: the mock server is the
		// resolver and the zone's nameserver.
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

	start := time.Now()
	if err := m.Manage(ctx, "*."+domain, domain); err != nil {
		return err
	}
	fmt.Fprintf(out, "obtained *.%s and %s in %v (%d orders)\n", domain, domain,
		time.Since(start).Round(time.Millisecond), ca.Requests("newOrder"))
	return serveAndCheck(ctx, out, m, ca, domain)
}

// runLocalPersist runs the read-only dns-persist-01 flow against the test
// CA: the Manager says which record to create and orders nothing; the
// program, as the operator, publishes it in the mock DNS server; the
// Manager sees it and obtains both certificates.
func runLocalPersist(ctx context.Context, out io.Writer, ca *testpebble.CA, domain string, nsPort int) error {
	events := make(chan autotls.Event, 16)
	m := &autotls.Manager{
		Issuers:    []autotls.Issuer{{DirectoryURL: ca.DirectoryURL()}},
		HTTPClient: ca.HTTPClient(),
		Storage:    storage.NewMemory(),
		AcceptTOS:  true, // agree to the CA's terms of service
		// Read-only: no Provider, so no DNS credentials. The mock server
		// is the resolver and the zone's nameserver.
		DNSPersist01: &solvers.DNSPersist01{
			Resolvers:      []string{ca.DNS().Addr()},
			NameserverPort: nsPort,
		},
		DNSRecordCheckInterval: 50 * time.Millisecond,
		DisableHTTP01:          true,
		DisableTLSALPN01:       true,
		OnEvent: func(e autotls.Event) {
			switch e.Type {
			case autotls.EventDNSRecordMissing, autotls.EventObtained:
				select {
				case events <- e:
				default:
				}
			}
		},
	}
	defer m.Close()

	err := m.Manage(ctx, "*."+domain, domain)
	if !errors.Is(err, solvers.ErrPersistRecordMissing) {
		return fmt.Errorf("manage without the record: got %v, want it to ask for the record", err)
	}
	infos, err := m.Certificates(ctx)
	if err != nil {
		return err
	}
	var rec record.DNS
	for _, info := range infos {
		for _, r := range info.DNSRecords {
			fmt.Fprintf(out, "%-15s needs  %s\n", info.Name, r)
			rec = r
		}
	}
	if rec.Name == "" {
		return errors.New("no record asked for")
	}
	fmt.Fprintf(out, "orders placed so far: %d; challenges accepted: %d\n", ca.Requests("newOrder"), ca.Requests("challenge"))

	// The operator publishes the record, once.
	start := time.Now()
	ca.DNS().AddTXT(rec.Name, rec.Value)
	for obtained := 0; obtained < 2; {
		select {
		case e := <-events:
			if e.Type == autotls.EventObtained {
				obtained++
			}
		case <-ctx.Done():
			return fmt.Errorf("waiting for the certificates: %w", ctx.Err())
		}
	}
	fmt.Fprintf(out, "obtained *.%s and %s %v after the record was published (%d orders)\n", domain, domain,
		time.Since(start).Round(time.Millisecond), ca.Requests("newOrder"))
	return serveAndCheck(ctx, out, m, ca, domain)
}

// serveAndCheck serves m over HTTPS on a loopback port and makes one
// request for a.DOMAIN, b.DOMAIN and DOMAIN.
func serveAndCheck(ctx context.Context, out io.Writer, m *autotls.Manager, ca *testpebble.CA, domain string) error {
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
		fmt.Fprintf(out, "%-15s -> certificate for %v, issuer %q, expires %s: %q\n",
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
