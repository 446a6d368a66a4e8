package storagetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/tlsmint/tlsmint/storage"
)

// benchValue is about the size of a certificate chain in PEM.
var benchValue = make([]byte, 4096)

// Benchmark measures the operations a certificate manager uses most —
// Load, Store (replacing an existing value) and an uncontended Lock plus
// unlock — as sub-benchmarks of b, each reporting ops/s. newStorage opens
// the backend once per sub-benchmark; it may skip b.
func Benchmark(b *testing.B, newStorage func(testing.TB) storage.Storage) {
	b.Run("Load", func(b *testing.B) {
		s, ctx := newStorage(b), context.Background()
		key := "certificates/ca/example.com/example.com.crt"
		if err := s.Store(ctx, key, benchValue); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := s.Load(ctx, key); err != nil {
				b.Fatal(err)
			}
		}
		reportOps(b)
	})
	b.Run("Store", func(b *testing.B) {
		s, ctx := newStorage(b), context.Background()
		i := 0
		for b.Loop() {
			// A few keys in turn: each Store replaces an existing value.
			if err := s.Store(ctx, fmt.Sprintf("certificates/ca/example%d.com/example.crt", i%8), benchValue); err != nil {
				b.Fatal(err)
			}
			i++
		}
		reportOps(b)
	})
	b.Run("LockUnlock", func(b *testing.B) {
		s, ctx := newStorage(b), context.Background()
		for b.Loop() {
			unlock, err := s.Lock(ctx, "issue/example.com")
			if err != nil {
				b.Fatal(err)
			}
			if err := unlock(); err != nil {
				b.Fatal(err)
			}
		}
		reportOps(b)
	})
}

func reportOps(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
