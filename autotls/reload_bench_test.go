package autotls_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"slices"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testenv"
	"github.com/tlsmint/tlsmint/storage"
	"github.com/tlsmint/tlsmint/storage/postgres"
)

// BenchmarkReload is a handshake for a stored name whose certificate is not
// in memory (evicted: CacheCapacity 16, 1,000 names served in turn), from
// each backend: one storage read and one parse. It reports the median and
// the 99th percentile of the handshakes' GetCertificate.
func BenchmarkReload(b *testing.B) {
	f := newFixture(b)
	src, names, _ := storeN(b, f, 1000)
	keys, err := src.List(context.Background(), "certificates/")
	if err != nil {
		b.Fatal(err)
	}
	backends := map[string]func(b *testing.B) storage.Storage{
		"memory": func(*testing.B) storage.Storage { return src },
		"files": func(b *testing.B) storage.Storage {
			s := storage.Dir(b.TempDir())
			b.Cleanup(func() { s.Close() })
			return s
		},
		"postgres": func(b *testing.B) storage.Storage {
			dsn := testenv.Postgres(b)
			buf := make([]byte, 5)
			rand.Read(buf)
			prefix := "reload" + hex.EncodeToString(buf) + "_"
			s, err := postgres.New(context.Background(), postgres.Config{DSN: dsn, TablePrefix: prefix})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				s.Close()
				postgres.Drop(context.Background(), postgres.Config{DSN: dsn, TablePrefix: prefix})
			})
			return s
		},
	}
	for _, name := range []string{"memory", "files", "postgres"} {
		b.Run("backend="+name, func(b *testing.B) {
			store := backends[name](b)
			if store != src {
				for _, k := range keys {
					v, err := src.Load(context.Background(), k)
					if err != nil {
						b.Fatal(err)
					}
					if err := store.Store(context.Background(), k, v); err != nil {
						b.Fatal(err)
					}
				}
			}
			m := benchManager(store, names)
			m.CacheCapacity = 16
			autotls.SetFastDiscoveryForTest(m)
			defer m.Close()
			m.TLSConfig()
			<-autotls.DiscoveredForTest(m)
			hellos := make([]*tls.ClientHelloInfo, len(names))
			for i, n := range names {
				hellos[i] = &tls.ClientHelloInfo{ServerName: n}
			}
			var took []time.Duration
			i := 0
			for b.Loop() {
				start := time.Now()
				if _, err := m.GetCertificate(hellos[i]); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
				if i++; i == len(hellos) {
					i = 0
				}
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
		})
	}
}
