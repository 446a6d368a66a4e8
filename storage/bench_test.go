package storage_test

import (
	"testing"

	"github.com/tlsmint/tlsmint/storage"
	"github.com/tlsmint/tlsmint/storage/storagetest"
)

func BenchmarkFile(b *testing.B) {
	storagetest.Benchmark(b, func(tb testing.TB) storage.Storage {
		s := storage.Dir(tb.TempDir())
		tb.Cleanup(func() { s.Close() })
		return s
	})
}

func BenchmarkMemory(b *testing.B) {
	storagetest.Benchmark(b, func(testing.TB) storage.Storage { return storage.NewMemory() })
}
