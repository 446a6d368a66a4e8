package acme_test

import (
	"fmt"
	"testing"

	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// BenchmarkObtain measures single-name issuance against the in-process Pebble
// (no validation sleep, no nonce rejection) and reports the ACME requests per
// certificate as counted by the CA.
func BenchmarkObtain(b *testing.B) {
	ca := newCA(b, testpebble.Options{})
	s := newHTTPSolver(b, ca)
	c := registered(b, ca)
	// A first certificate warms the nonce pool and the directory.
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
	b.ReportMetric(float64(total)/float64(i), "requests/cert")
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "certs/s")
	b.ReportMetric(float64(counts["authz"])/float64(i), "authz-req/cert")
	b.ReportMetric(float64(counts["order"])/float64(i), "order-polls/cert")
	b.ReportMetric(float64(counts["newNonce"]), "newNonce-total")
}
