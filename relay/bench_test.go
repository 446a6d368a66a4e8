package relay_test

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/relay"
	"github.com/tlsmint/tlsmint/storage"
)

// BenchmarkObtain compares one client obtaining single-name certificates
// directly from the test CA with the same client through the relay (its
// validation, the upstream order and the download included), with the
// relay's state in memory, in files and in PostgreSQL (when
// TLSMINT_TEST_POSTGRES is set), with nonces in memory and shared
// through the storage (SharedNonces): the difference is the latency the
// relay adds per certificate, and certs/s the orders per second one
// sequential client gets through.
func BenchmarkObtain(b *testing.B) {
	for _, via := range []string{"direct", "relay", "relay-files", "relay-shared-nonces", "relay-files-shared-nonces", "relay-postgres", "relay-postgres-shared-nonces"} {
		b.Run(via, func(b *testing.B) {
			var o envOptions
			switch {
			case strings.HasPrefix(via, "relay-files"):
				o.store = storage.Dir(b.TempDir())
			case strings.HasPrefix(via, "relay-postgres"):
				o.store = postgresStores(b, 1)[0] // skips without TLSMINT_TEST_POSTGRES
			}
			if strings.HasSuffix(via, "shared-nonces") {
				o.modify = func(s *relay.Server) { s.SharedNonces = true }
			}
			e := newEnv(b, o)
			var c *acme.Client
			var solver acme.Solver
			if via == "direct" {
				c = &acme.Client{DirectoryURL: e.ca.DirectoryURL(), Key: newKey(b), HTTPClient: e.ca.HTTPClient(), PollInterval: 10 * time.Millisecond}
				if _, err := c.Register(ctxT(b), acme.Account{TermsOfServiceAgreed: true}); err != nil {
					b.Fatal(err)
				}
				solver = e.up
			} else {
				c = e.registered(b)
				solver = e.down
			}
			key := newKey(b)
			i := 0
			for b.Loop() {
				i++
				_, err := c.Obtain(ctxT(b), acme.ObtainRequest{
					Identifiers: acme.DNSNames("b" + strconv.Itoa(i) + ".example.com"),
					CertKey:     key,
					Solvers:     map[string]acme.Solver{acme.ChallengeHTTP01: solver},
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "certs/s")
		})
	}
}

// BenchmarkObtainParallel is BenchmarkObtain/relay with clients running
// at once (GOMAXPROCS goroutines, one account each): the relay's
// throughput in certificates per second against the test CA. (Above
// about 16 concurrent orders on one account, the in-process Pebble stops
// answering newOrder, with or without the relay in front: keep -cpu low.)
func BenchmarkObtainParallel(b *testing.B) {
	e := newEnv(b, envOptions{})
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		c := e.registered(b)
		key := newKey(b)
		for pb.Next() {
			i := n.Add(1)
			_, err := c.Obtain(ctxT(b), acme.ObtainRequest{
				Identifiers: acme.DNSNames("p" + strconv.FormatInt(i, 10) + ".example.com"),
				CertKey:     key,
				Solvers:     map[string]acme.Solver{acme.ChallengeHTTP01: e.down},
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(n.Load())/b.Elapsed().Seconds(), "certs/s")
}
