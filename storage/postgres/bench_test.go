package postgres_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/tlsmint/tlsmint/storage/postgres"
)

var benchValue = make([]byte, 4096)

func reportOps(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func benchStorage(b *testing.B) *postgres.Storage {
	dsn := testDSN(b)
	return open(b, postgres.Config{DSN: dsn, TablePrefix: testPrefix(b, dsn)})
}

func BenchmarkLoad(b *testing.B) {
	s, ctx := benchStorage(b), context.Background()
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
}

func BenchmarkStore(b *testing.B) {
	s, ctx := benchStorage(b), context.Background()
	i := 0
	for b.Loop() {
		if err := s.Store(ctx, fmt.Sprintf("certificates/ca/example%d.com/example.crt", i%8), benchValue); err != nil {
			b.Fatal(err)
		}
		i++
	}
	reportOps(b)
}

func BenchmarkLockUnlock(b *testing.B) {
	s, ctx := benchStorage(b), context.Background()
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
}
