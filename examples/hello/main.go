// Command hello serves "hello" over HTTPS for real domain names, with
// certificates from Let's Encrypt obtained on the first visit and renewed
// in the background. The names must resolve to this machine, and ports 443
// (and 80 with -full) must be reachable from the internet and bindable by
// the process (root, or CAP_NET_BIND_SERVICE).
//
// Usage:
//
//	go build ./examples/hello
//	sudo ./hello example.com www.example.com
//	sudo ./hello -full -email ops@example.com example.com www.example.com
//
// Without -full it is the one-liner: [autotls.NewListener] on :443,
// tls-alpn-01, certificates under the user's cache folder. With -full it
// spells out the Manager: a contact email, http-01 and redirects to HTTPS on
// :80, and logs. Either way, running it agrees to Let's Encrypt's terms of
// service (the Manager's AcceptTOS; the terms' URL is logged when the account
// is registered).
package main

import (
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
)

func main() {
	full := flag.Bool("full", false, "use an explicit Manager with http-01 on :80")
	email := flag.String("email", "", "contact address for the ACME account (with -full)")
	flag.Parse()
	domains := flag.Args()
	if len(domains) == 0 {
		fmt.Fprintln(os.Stderr, "usage: hello [-full] [-email addr] domain...")
		os.Exit(2)
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", r.Host)
	})

	if !*full {
		// The whole of automatic HTTPS.
		ln, err := autotls.NewListener(domains...)
		if err != nil {
			log.Fatal(err)
		}
		log.Fatal(http.Serve(ln, handler))
	}

	// The same, spelled out, with server timeouts. The names come from the
	// command line: NewHostWhitelist reports the invalid ones.
	hosts, err := autotls.NewHostWhitelist(domains...)
	if err != nil {
		log.Fatal(err)
	}
	m := &autotls.Manager{
		Hosts:     hosts,
		Issuers:   []autotls.Issuer{autotls.LetsEncrypt(*email)},
		AcceptTOS: true, // running this agrees to Let's Encrypt's terms of service
		Logger:    slog.Default(),
	}
	go func() {
		// http-01 challenges; every other request is redirected to HTTPS.
		srv := &http.Server{Addr: ":80", Handler: m.HTTPHandler(nil), ReadHeaderTimeout: 10 * time.Second}
		log.Fatal(srv.ListenAndServe())
	}()
	ln, err := m.Listen("tcp", ":443")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	log.Fatal(srv.Serve(ln))
}
