package postgres_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/tlsmint/tlsmint/storage"
	"github.com/tlsmint/tlsmint/storage/postgres"
)

// Renew a certificate on exactly one node of a fleet, and let the others
// know.
func Example() {
	ctx := context.Background()
	s, err := postgres.New(ctx, postgres.Config{DSN: os.Getenv("DATABASE_URL")})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	lockCtx, unlock, err := s.LockContext(ctx, "renew/example.com")
	if err != nil {
		log.Fatal(err)
	}
	defer unlock()
	// ... obtain the certificate, under lockCtx ...
	// A fenced write: refused if this node lost its lease meanwhile.
	if err := s.Store(lockCtx, "certificates/ca/example.com/example.com.crt", []byte("...")); err != nil {
		log.Fatal(err)
	}
}

// Learn at once when another node renews a certificate.
func ExampleStorage_Watch() {
	ctx := context.Background()
	s, err := postgres.New(ctx, postgres.Config{DSN: os.Getenv("DATABASE_URL")})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	events, err := s.Watch(ctx, "certificates/")
	if err != nil {
		log.Fatal(err)
	}
	for ev := range events {
		fmt.Println("changed:", ev.Key, "deleted:", ev.Deleted)
	}
}

var _ storage.Storage = (*postgres.Storage)(nil)
