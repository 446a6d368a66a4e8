package statuspage

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
)

// BenchmarkPage renders the page of 10,000 certificates (HTML and JSON),
// the figure BENCHMARKS.md reports.
func BenchmarkPage(b *testing.B) {
	infos := make([]autotls.CertificateInfo, 10000)
	for i := range infos {
		infos[i] = cert(fmt.Sprintf("name-%05d.example.com", i), -time.Duration(i%90)*day, 90*day)
		if i%100 == 0 {
			infos[i].LastError, infos[i].LastErrorAt, infos[i].BackoffUntil = "acme: rateLimited", t0, t0.Add(time.Hour)
		}
	}
	for _, target := range []string{"/", "/?format=json"} {
		b.Run(target, func(b *testing.B) {
			h := synthetic(infos, nil)
			r := httptest.NewRequest(http.MethodGet, target, nil)
			r.RemoteAddr = "127.0.0.1:1"
			var size int
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != 200 {
					b.Fatalf("got status %d", w.Code)
				}
				size = w.Body.Len()
			}
			b.ReportMetric(float64(size), "bytes/page")
		})
	}
}
