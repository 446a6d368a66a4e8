package statuspage_test

import (
	"log"
	"net/http"
	"time"

	"github.com/tlsmint/tlsmint/audit"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/statuspage"
	"github.com/tlsmint/tlsmint/storage"
)

// The status page of a Manager and its audit trail, on an operators' port
// on loopback: the default authorizer refuses every other client anyway.
func Example() {
	store := storage.Dir("/var/lib/tlsmint")
	trail := &audit.Log{Storage: store, Node: "web-1"}
	defer trail.Close()
	m := &autotls.Manager{
		Storage:   store,
		Hosts:     autotls.HostWhitelist("example.com"),
		AcceptTOS: true,
		AuditLog:  trail,
	}
	defer m.Close()

	mux := http.NewServeMux()
	mux.Handle("/status", &statuspage.Handler{Manager: m, Audit: trail, Refresh: time.Minute})
	srv := &http.Server{Addr: "127.0.0.1:9180", Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}

// Behind a reverse proxy on the same host every request comes from
// loopback: decide by something the proxy sets instead.
func ExampleHandler_Authorize() {
	var m *autotls.Manager // configured elsewhere
	page := &statuspage.Handler{
		Manager: m,
		Authorize: func(r *http.Request) error {
			if err := statuspage.LoopbackOnly(r); err != nil {
				return err
			}
			if r.Header.Get("X-Authenticated-Group") != "ops" {
				return http.ErrNoCookie // any error refuses with 403
			}
			return nil
		},
	}
	http.Handle("/status", page)
}
