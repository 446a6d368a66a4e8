// Command local runs automatic HTTPS end to end on one machine, offline and
// without root: an in-process test CA (Let's Encrypt's Pebble), an
// [autotls.Manager] pointed at it, and an HTTPS server whose certificate the
// Manager obtains, with real http-01 validation on loopback, during the
// first TLS handshake.
//
// Usage:
//
//	go run ./examples/local                    # one HTTPS request to itself, print the certificate, exit
//	go run ./examples/local -serve             # keep serving; prints a curl command line and the status page's URL
//	go run ./examples/local -serve -addr 127.0.0.1:8443 -status 127.0.0.1:8080
//
// With -serve the Manager also keeps an audit trail, and the status page
// (package statuspage) is served over plain HTTP on a loopback port, at
// /status: the certificate, its renewal plan and the ACME exchanges that
// obtained it, in any browser.
//
// The client trusts only the test CA's roots, so a successful request proves
// that the certificate was issued for the name and served by the Manager.
package main

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/tlsmint/tlsmint/audit"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/statuspage"
	"github.com/tlsmint/tlsmint/storage"
)

// name is the test domain; the CA's mock DNS resolves every name to 127.0.0.1.
const name = "local.tlsmint.test"

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "loopback address of the HTTPS server")
	serve := flag.Bool("serve", false, "keep serving until interrupted, with the status page")
	status := flag.String("status", "127.0.0.1:0", "loopback address of the status page's HTTP server (with -serve)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, *addr, *serve, *status); err != nil {
		log.Printf("local: %v", err)
		os.Exit(1)
	}
}

// run starts the CA, the Manager and the servers, makes one request and
// writes what it got to out; with serve set it then serves, with the
// status page on statusAddr, until ctx is done.
func run(ctx context.Context, out io.Writer, addr string, serve bool, statusAddr string) error {
	ca, err := testpebble.New(testpebble.Options{})
	if err != nil {
		return err
	}
	defer ca.Close()

	store := storage.NewMemory() // gone at exit; use storage.Dir to keep certificates
	var trail *audit.Log
	if serve {
		// The audit trail the status page shows, kept with the certificates;
		// closed after the Manager, which reports its last events to it.
		trail = &audit.Log{Storage: store, Node: "local"}
		defer trail.Close()
	}
	m := &autotls.Manager{
		Issuers:    []autotls.Issuer{{DirectoryURL: ca.DirectoryURL()}},
		HTTPClient: ca.HTTPClient(),             // trusts the CA's HTTPS front end
		Storage:    store,                       // certificates, account, audit trail
		Hosts:      autotls.HostWhitelist(name), // the only name that may be ordered
		AcceptTOS:  true,                        // agree to the CA's terms of service
	}
	if trail != nil {
		m.AuditLog = trail
	}
	defer m.Close()

	// The CA's validation authority connects to 127.0.0.1 on these ports:
	// http-01 on HTTPPort (what the Manager prefers once HTTPHandler is in
	// use), tls-alpn-01 on TLSPort.
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s over %s\n", r.Host, r.Proto)
	})
	if _, err := start(loopback(ca.HTTPPort()), m.HTTPHandler(nil), nil); err != nil {
		return err
	}
	if _, err := start(loopback(ca.TLSPort()), hello, m.TLSConfig()); err != nil {
		return err
	}
	ln, err := start(addr, hello, m.TLSConfig())
	if err != nil {
		return err
	}
	port := ln.Addr().(*net.TCPAddr).Port

	// A client that trusts only the test CA's roots, asks for the test name
	// and dials our loopback server whatever the URL says. It offers h2 and
	// http/1.1 as browsers do (a Transport with its own TLS config or dialer
	// offers only http/1.1 unless told otherwise).
	var handshake time.Duration
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.RootPool(), ServerName: name},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return new(net.Dialer).DialContext(ctx, network, ln.Addr().String())
		},
		ForceAttemptHTTP2: true,
	}}
	url := fmt.Sprintf("https://%s:%d/", name, port)
	begin := time.Now()
	trace := &httptrace.ClientTrace{TLSHandshakeDone: func(tls.ConnectionState, error) { handshake = time.Since(begin) }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	leaf := resp.TLS.PeerCertificates[0]
	fmt.Fprintf(out, "GET %s -> %s: %s", url, resp.Status, body)
	fmt.Fprintf(out, "first handshake: %v (certificate obtained during it)\n", handshake.Round(time.Millisecond))
	fmt.Fprintf(out, "names:   %v\n", leaf.DNSNames)
	fmt.Fprintf(out, "issuer:  %s\n", leaf.Issuer.CommonName)
	fmt.Fprintf(out, "serial:  %s\n", hex.EncodeToString(leaf.SerialNumber.Bytes()))
	fmt.Fprintf(out, "expires: %s\n", leaf.NotAfter.Format(time.RFC3339))
	if !serve {
		return nil
	}

	// Keep serving, with the CA's roots in a file for curl.
	rootFile, err := writeRoots(ca)
	if err != nil {
		return err
	}
	defer os.Remove(rootFile)
	fmt.Fprintf(out, "\nserving https://%s:%d/ on %s; try:\n", name, port, ln.Addr())
	fmt.Fprintf(out, "  curl --resolve %s:%d:127.0.0.1 --cacert %s https://%s:%d/\n", name, port, rootFile, name, port)

	// The status page, for loopback clients only (its default), on plain
	// HTTP so that any browser opens it without trusting the test CA.
	mux := http.NewServeMux()
	mux.Handle("/status", &statuspage.Handler{Manager: m, Audit: trail, Title: "examples/local", Refresh: 30 * time.Second})
	sl, err := start(statusAddr, mux, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "status page: http://%s/status (JSON: ?format=json)\n", sl.Addr())
	fmt.Fprintln(out, "Ctrl-C to stop")
	<-ctx.Done()
	fmt.Fprintln(out, "stopping")
	return nil
}

// start serves h on addr, over TLS when conf is not nil, until the process
// ends, and returns the listener.
func start(addr string, h http.Handler, conf *tls.Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	if conf != nil {
		go srv.Serve(tls.NewListener(ln, conf))
	} else {
		go srv.Serve(ln)
	}
	return ln, nil
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// writeRoots writes the roots that the CA's certificates chain to into a
// temporary PEM file and returns its path.
func writeRoots(ca *testpebble.CA) (string, error) {
	f, err := os.CreateTemp("", "tlsmint-local-roots-*.pem")
	if err != nil {
		return "", err
	}
	for _, c := range ca.Roots() {
		if err := pem.Encode(f, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}); err != nil {
			f.Close()
			return "", err
		}
	}
	return f.Name(), f.Close()
}
