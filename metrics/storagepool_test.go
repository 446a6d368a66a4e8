package metrics

import (
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/storage"
)

// pooled is a storage that reports a connection pool.
type pooled struct {
	*storage.MemoryStorage
	stats storage.PoolStats
}

func (p *pooled) PoolStats() storage.PoolStats { return p.stats }

func TestStoragePool(t *testing.T) {
	st := &pooled{MemoryStorage: storage.NewMemory(), stats: storage.PoolStats{
		MaxConns: 8, TotalConns: 6, IdleConns: 3, AcquiredConns: 2, ConstructingConns: 1,
		Acquires: 100, EmptyAcquires: 7, CanceledAcquires: 2, AcquireWait: 1500 * time.Millisecond,
		NewConns: 9, LifetimeCloses: 1, IdleCloses: 2, BrokenConns: 4,
	}}
	for _, tc := range []struct {
		name string
		c    *Collector
	}{
		{"Options.Storage", New(nil, Options{Storage: st})},
		{"the Manager's Storage", New(&autotls.Manager{Storage: st}, Options{RefreshInterval: -1})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer tc.c.Close()
			m := scrape(t, tc.c)
			for _, w := range []struct {
				name   string
				labels []string
				want   float64
			}{
				{"tlsmint_storage_pool_connections", []string{"state=idle"}, 3},
				{"tlsmint_storage_pool_connections", []string{"state=in_use"}, 2},
				{"tlsmint_storage_pool_connections", []string{"state=opening"}, 1},
				{"tlsmint_storage_pool_max_connections", nil, 8},
				{"tlsmint_storage_pool_acquires_total", nil, 100},
				{"tlsmint_storage_pool_empty_acquires_total", nil, 7},
				{"tlsmint_storage_pool_canceled_acquires_total", nil, 2},
				{"tlsmint_storage_pool_acquire_seconds_total", nil, 1.5},
				{"tlsmint_storage_pool_connections_opened_total", nil, 9},
				{"tlsmint_storage_pool_connections_closed_total", []string{"reason=idle"}, 2},
				{"tlsmint_storage_pool_connections_closed_total", []string{"reason=lifetime"}, 1},
				{"tlsmint_storage_pool_broken_connections_total", nil, 4},
			} {
				if got := m.value(t, w.name, w.labels...); got != w.want {
					t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.want)
				}
			}
			lint(t, tc.c)
		})
	}
	// A storage without a pool adds no series.
	c := New(nil, Options{Storage: storage.NewMemory()})
	defer c.Close()
	if m := scrape(t, c); m["tlsmint_storage_pool_connections"] != nil {
		t.Error("a storage without a pool got tlsmint_storage_pool_* series")
	}
}
