package watchdog_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/watchdog"
)

// A watchdog on a Manager's own listener and a remote endpoint, alerting
// on every problem and serving the last results as JSON.
func ExampleWatchdog() {
	m := &autotls.Manager{
		Hosts:     autotls.HostWhitelist("example.com", "www.example.com"),
		AcceptTOS: true,
	}
	defer m.Close()
	ln, err := m.Listen("tcp", ":443")
	if err != nil {
		log.Fatal(err)
	}
	go http.Serve(ln, http.NotFoundHandler())

	w := &watchdog.Watchdog{
		Manager:   m,
		Listeners: []string{"127.0.0.1:443"}, // probed with every name m holds
		Targets:   []watchdog.Target{{Addr: "api.example.net:443"}},
		Interval:  15 * time.Minute,
		Logger:    slog.Default(),
		OnProblem: func(r watchdog.Result) {
			if errors.Is(r.Err(), watchdog.ErrNotManagerCertificate) {
				log.Printf("%s serves serial %s, not the Manager's", r.Target, r.Serial())
			}
		},
	}
	if err := w.Start(); err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	http.HandleFunc("/watchdog", func(rw http.ResponseWriter, _ *http.Request) {
		for _, r := range w.Last() {
			fmt.Fprintf(rw, "%s\t%v\n", r.Target, r.Err())
		}
	})
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", nil))
}

// One endpoint probed now, with a threshold of 20 days.
func ExampleWatchdog_Check() {
	w := &watchdog.Watchdog{ExpiryThreshold: 20 * 24 * time.Hour, ExpiryFraction: -1}
	r, err := w.Check(context.Background(), watchdog.Target{Addr: "example.com:443"})
	if err != nil {
		log.Fatal(err)
	}
	switch {
	case r.OK():
		fmt.Println("healthy until", r.Leaf().NotAfter)
	case errors.Is(r.Err(), watchdog.ErrExpiringSoon):
		fmt.Println("renew now:", r.Err())
	default:
		fmt.Println(r.Err())
	}
}
