package postgres_test

import (
	"testing"

	"github.com/tlsmint/tlsmint/storage"
	"github.com/tlsmint/tlsmint/storage/postgres"
	"github.com/tlsmint/tlsmint/storage/storagetest"
)

func BenchmarkPostgres(b *testing.B) {
	storagetest.Benchmark(b, func(tb testing.TB) storage.Storage {
		dsn := testDSN(tb)
		return open(tb, postgres.Config{DSN: dsn, TablePrefix: testPrefix(tb, dsn)})
	})
}
