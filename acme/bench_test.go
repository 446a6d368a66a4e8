package acme_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// BenchmarkObtain measures single-name issuance against the in-process Pebble
// (no nonce rejection) and reports the ACME requests per certificate as
// counted by the CA. The validation sub-benchmarks make every http-01
// validation take that long (the challenge server answers late, as a slow
// multi-perspective CA would): with the poll schedule learned from the first
// certificate, the requests stay near the protocol's minimum of 7 and the
// time per certificate near the validation time.
func BenchmarkObtain(b *testing.B) {
	for _, delay := range []time.Duration{0, 500 * time.Millisecond, 2 * time.Second} {
		b.Run(fmt.Sprintf("validation=%v", delay), func(b *testing.B) {
			ca := newCA(b, testpebble.Options{})
			s := newHTTPSolver(b, ca)
			s.delay.Store(int64(delay))
			c := registered(b, ca)
			// A first certificate warms the nonce pool and the directory,
			// and teaches the client the CA's timing.
			mustObtain(b, c, s, "warm.example.com")
			ca.ResetCounts()
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				i++
				mustObtain(b, c, s, fmt.Sprintf("bench%d.example.com", i))
			}
			b.StopTimer()
			counts := ca.RequestCounts()
			total := 0
			for _, n := range counts {
				total += n
			}
			perCert := b.Elapsed() / time.Duration(i)
			b.ReportMetric(float64(total)/float64(i), "requests/cert")
			b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "certs/s")
			b.ReportMetric(float64(counts["authz"])/float64(i), "authz-req/cert")
			b.ReportMetric(float64(counts["order"])/float64(i), "order-polls/cert")
			b.ReportMetric(float64(counts["newNonce"]), "newNonce-total")
			if delay > 0 {
				b.ReportMetric(float64(perCert)/float64(delay), "time/validation")
			}
		})
	}
}
