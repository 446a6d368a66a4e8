package metrics

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tlsmint/tlsmint/autotls"
)

// BenchmarkScrape is a scrape through promhttp (gather, encode as text)
// with n names known to the collector and the default cap of 1,000
// per-name names; the copy of Manager.Certificates is already read, as
// for every scrape but the first.
func BenchmarkScrape(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		b.Run("names="+strconv.Itoa(n), func(b *testing.B) {
			clk := newClock()
			c := fake(simulated(n, clk.now()), Options{RefreshInterval: -1}, clk)
			if err := c.Refresh(context.Background()); err != nil {
				b.Fatal(err)
			}
			reg := prometheus.NewRegistry()
			reg.MustRegister(c)
			h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
			req := httptest.NewRequest("GET", "/metrics", nil)
			req.Header.Set("Accept", "text/plain")
			var bytes int
			b.ReportAllocs()
			for b.Loop() {
				w := &countingWriter{h: http.Header{}}
				h.ServeHTTP(w, req)
				bytes = w.n
			}
			b.ReportMetric(float64(bytes), "body-bytes")
		})
	}
}

// BenchmarkRefresh is the collector's part of a read of
// Manager.Certificates (building its copy from n infos), without the
// Manager's own cost.
func BenchmarkRefresh(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		b.Run("names="+strconv.Itoa(n), func(b *testing.B) {
			clk := newClock()
			c := fake(simulated(n, clk.now()), Options{RefreshInterval: -1}, clk)
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Refresh(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// countingWriter is an http.ResponseWriter that counts the body.
type countingWriter struct {
	h http.Header
	n int
}

func (w *countingWriter) Header() http.Header { return w.h }
func (w *countingWriter) WriteHeader(int)     {}
func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	return io.Discard.Write(p)
}

// BenchmarkOnEvent is the cost of one event (a renewal) to the Manager's
// goroutine that emits it.
func BenchmarkOnEvent(b *testing.B) {
	clk := newClock()
	infos := simulated(10_000, clk.now())
	c := fake(infos, Options{RefreshInterval: -1}, clk)
	if err := c.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		info := &infos[i%len(infos)]
		i++
		c.OnEvent(autotls.Event{Type: autotls.EventRenewed, Name: info.Name, Issuer: testIssuer, NotAfter: info.NotAfter, RenewAt: info.RenewAt, Reason: info.RenewReason})
	}
}
