package metrics_test

import (
	"log"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/metrics"
)

// A Manager's certificates and ACME traffic on /metrics, with the
// Manager's events also handled by the program itself.
func ExampleNew() {
	m := &autotls.Manager{
		Hosts:     autotls.HostWhitelist("example.com", "www.example.com"),
		Issuers:   []autotls.Issuer{{Email: "ops@example.com"}},
		AcceptTOS: true,
	}
	defer m.Close()
	c := metrics.New(m, metrics.Options{MaxNames: 500})
	defer c.Close()
	// Wire the collector before the Manager's first use.
	m.ACMEObserver = c
	m.OnEvent = func(e autotls.Event) {
		c.OnEvent(e)
		if e.Type == autotls.EventFailed {
			log.Printf("certificate for %s failed: %v", e.Name, e.Err)
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	go func() { log.Fatal(http.ListenAndServe("127.0.0.1:9090", mux)) }()

	srv := &http.Server{Addr: ":443", TLSConfig: m.TLSConfig(), Handler: http.NotFoundHandler()}
	log.Fatal(srv.ListenAndServeTLS("", ""))
}
