package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/storage"
)

// BenchmarkScrape is a scrape through promhttp (gather, encode as text)
// with n names known to the collector and the default cap of 1,000
// per-name names; the collector's copy of the names' state is already
// read, as for every scrape but the first.
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

// BenchmarkRefresh is the collector's part of a read of a list of n
// certificates (building its copy from n infos, as from
// Options.Certificates), without the list's own cost; a read of the
// Manager's snapshot is BenchmarkSnapshotTable.
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

// BenchmarkSnapshotTable is the collector's part of a read of the
// Manager's snapshot: its copy built from the snapshot of n names (from
// the schedule index in a memory storage), without the snapshot's own
// build, which the Manager shares with its other views.
func BenchmarkSnapshotTable(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		b.Run("names="+strconv.Itoa(n), func(b *testing.B) {
			const dir = "https://ca.bench.test/directory"
			store := storage.NewMemory()
			buckets := make([]map[string][4]int64, 1024)
			now := time.Now().Unix()
			for i := range n {
				bk := i % len(buckets)
				if buckets[bk] == nil {
					buckets[bk] = map[string][4]int64{}
				}
				buckets[bk][fmt.Sprintf("host%07d.bench.example.com", i)] = [4]int64{now + int64(i), now + int64(i)/2, now - 3600, 0}
			}
			for bk, names := range buckets {
				v, _ := json.Marshal(map[string]any{"version": 1, "issuer": dir, "names": names})
				if err := store.Store(context.Background(), fmt.Sprintf("index/ca.bench.test-directory/%03x.json", bk), v); err != nil {
					b.Fatal(err)
				}
			}
			m := &autotls.Manager{Issuers: []autotls.Issuer{{DirectoryURL: dir}}, Storage: store}
			defer m.Close()
			s, err := m.RefreshSnapshot(context.Background())
			if err != nil || s.Len() != n {
				b.Fatalf("snapshot of %d rows (%v), want %d", s.Len(), err, n)
			}
			b.ReportAllocs()
			for b.Loop() {
				if tab := snapshotTable(s); len(tab.recs) != n {
					b.Fatalf("%d records", len(tab.recs))
				}
			}
		})
	}
}
