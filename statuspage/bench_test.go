package statuspage

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/record"
)

// BenchmarkPage renders the page of 10,000 certificates (HTML with every
// row and a page of the default MaxRows, and the JSON page), the figures BENCHMARKS.md
// reports; each page reads the status anew (no sharing).
func BenchmarkPage(b *testing.B) {
	infos := make([]record.Certificate, 10000)
	for i := range infos {
		infos[i] = cert(fmt.Sprintf("name-%05d.example.com", i), -time.Duration(i%90)*day, 90*day)
		if i%100 == 0 {
			infos[i].LastError, infos[i].LastErrorAt, infos[i].BackoffUntil = "acme: rateLimited", t0, t0.Add(time.Hour)
		}
	}
	for _, tc := range []struct {
		name, target string
		maxRows      int
	}{
		{"html-all-rows", "/", -1},
		{"html-default-rows", "/", 0},
		{"json", "/?format=json", 0},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := synthetic(infos, nil)
			h.MaxRows = tc.maxRows
			h.share.fresh = -1 // every page reads the status anew
			benchServe(b, h, tc.target)
		})
	}
}

// benchServe times h serving GET target from the loopback, failing on
// any status but 200, and reports the page's size.
func benchServe(b *testing.B, h *Handler, target string) {
	b.Helper()
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.RemoteAddr = "127.0.0.1:1"
	var size int
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatalf("status %d", w.Code)
		}
		size = w.Body.Len()
	}
	b.ReportMetric(float64(size), "bytes/page")
}
