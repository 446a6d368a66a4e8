package storage_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/tlsmint/tlsmint/storage"
)

// benchValue is about the size of a certificate chain in PEM.
var benchValue = make([]byte, 4096)

func reportOps(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func benchBackends(b *testing.B, f func(b *testing.B, s storage.Storage)) {
	b.Run("file", func(b *testing.B) {
		s := storage.Dir(b.TempDir())
		defer s.Close()
		f(b, s)
	})
	b.Run("memory", func(b *testing.B) { f(b, storage.NewMemory()) })
}

func BenchmarkLoad(b *testing.B) {
	benchBackends(b, func(b *testing.B, s storage.Storage) {
		ctx := context.Background()
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
}

func BenchmarkStore(b *testing.B) {
	benchBackends(b, func(b *testing.B, s storage.Storage) {
		ctx := context.Background()
		i := 0
		for b.Loop() {
			// A few keys in turn: each Store replaces an existing file.
			if err := s.Store(ctx, fmt.Sprintf("certificates/ca/example%d.com/example.crt", i%8), benchValue); err != nil {
				b.Fatal(err)
			}
			i++
		}
		reportOps(b)
	})
}

func BenchmarkLockUnlock(b *testing.B) {
	benchBackends(b, func(b *testing.B, s storage.Storage) {
		ctx := context.Background()
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
