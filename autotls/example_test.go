package autotls_test

import (
	"context"
	"log"
	"net"
	"net/http"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/storage"
)

// The one-line HTTPS server.
func ExampleNewListener() {
	ln, err := autotls.NewListener("example.com", "www.example.com")
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hello over HTTPS\n"))
	})))
}

// A Manager with http-01 on port 80 and a TLS server on 443.
func ExampleManager() {
	m := &autotls.Manager{
		Hosts:     autotls.HostWhitelist("example.com", "www.example.com"),
		Issuers:   []autotls.Issuer{{Email: "ops@example.com"}},
		AcceptTOS: true, // the operator agrees to Let's Encrypt's terms
	}
	defer m.Close()
	go func() { log.Fatal(http.ListenAndServe(":80", m.HTTPHandler(nil))) }()
	srv := &http.Server{Addr: ":443", TLSConfig: m.TLSConfig(), Handler: http.NotFoundHandler()}
	log.Fatal(srv.ListenAndServeTLS("", ""))
}

// On-demand issuance for customer domains not known in advance, gated by a
// decision function and rate limits, with certificates shared by a fleet.
func ExampleOnDemand() {
	isCustomer := func(ctx context.Context, name string) bool { return name == "shop.customer.example" }
	m := &autotls.Manager{
		Storage:   storage.Dir("/var/lib/tlsmint"),
		AcceptTOS: true,
		OnDemand: &autotls.OnDemand{
			Decide: func(ctx context.Context, name string, client net.Addr) error {
				if !isCustomer(ctx, name) {
					return autotls.ErrHostNotAllowed
				}
				return nil
			},
			RateLimit:   20, // new orders per minute
			MaxInFlight: 4,
		},
	}
	defer m.Close()
	ln, err := m.Listen("tcp", ":443")
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.Serve(ln, http.NotFoundHandler()))
}

// Obtain certificates eagerly at start-up and keep them renewed.
func ExampleManager_Manage() {
	m := &autotls.Manager{Issuers: []autotls.Issuer{{Email: "ops@example.com"}}, AcceptTOS: true}
	defer m.Close()
	if err := m.Manage(context.Background(), "example.com", "api.example.com"); err != nil {
		log.Printf("some certificates are not ready yet: %v", err)
	}
	ln, err := m.Listen("tcp", ":443")
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.Serve(ln, http.NotFoundHandler()))
}

// Two CAs: Let's Encrypt first, ZeroSSL (with its External Account
// Binding) when Let's Encrypt fails or rate-limits.
func ExampleIssuer() {
	mac, err := acme.DecodeEABKey("from-the-zerossl-dashboard")
	if err != nil {
		log.Fatal(err)
	}
	m := &autotls.Manager{
		Hosts:     autotls.HostWhitelist("example.com"),
		AcceptTOS: true, // the operator agrees to both CAs' terms
		Issuers: []autotls.Issuer{
			autotls.LetsEncrypt("ops@example.com"),
			autotls.ZeroSSL("ops@example.com", &acme.ExternalAccountBinding{KeyID: "kid-from-zerossl", HMACKey: mac}),
		},
	}
	defer m.Close()
	ln, err := m.Listen("tcp", ":443")
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.Serve(ln, http.NotFoundHandler()))
}

// What the Manager holds, for a status page or an alert.
func ExampleManager_Certificates() {
	m := &autotls.Manager{Hosts: autotls.HostWhitelist("example.com"), AcceptTOS: true}
	defer m.Close()
	infos, err := m.Certificates(context.Background())
	if err != nil {
		log.Print(err)
	}
	for _, c := range infos {
		log.Printf("%s: expires %s, renews %s (%s), last error %q", c.Name, c.NotAfter, c.RenewAt, c.RenewReason, c.LastError)
	}
}

// A view of many names: the first 50 failing ones, found in the snapshot
// every view of the Manager shares (a pass over its rows in memory, no
// storage read), then loaded: only those 50 certificates.
func ExampleManager_Snapshot() {
	m := &autotls.Manager{Storage: storage.Dir("/var/lib/tlsmint")}
	defer m.Close()
	ctx := context.Background()
	s, err := m.Snapshot(ctx)
	if s == nil {
		log.Fatal(err)
	}
	var page []string
	for i := range s.Len() {
		if !s.Row(i).LastErrorAt.IsZero() {
			page = append(page, s.Name(i))
		}
		if len(page) == 50 {
			break // s.Cursor(i) continues from here, also in a later snapshot
		}
	}
	infos, err := m.CertificatesOf(ctx, page...)
	if err != nil {
		log.Print(err)
	}
	for _, info := range infos {
		log.Printf("%s: %s (since %s)", info.Name, info.LastError, info.LastErrorAt)
	}
}
