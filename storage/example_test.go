package storage_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"

	"github.com/tlsmint/tlsmint/storage"
)

func ExampleDir() {
	dir, err := os.MkdirTemp("", "tlsmint-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	s := storage.Dir(filepath.Join(dir, "tlsmint"))
	defer s.Close()

	key := "certificates/ca/example.com/example.com.crt"
	if err := s.Store(ctx, key, []byte("-----BEGIN CERTIFICATE-----")); err != nil {
		log.Fatal(err)
	}
	data, err := s.Load(ctx, key)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(data))

	_, err = s.Load(ctx, "certificates/ca/example.org/example.org.crt")
	fmt.Println(errors.Is(err, fs.ErrNotExist))
	// Output:
	// -----BEGIN CERTIFICATE-----
	// true
}

func ExampleStorage_List() {
	ctx := context.Background()
	s := storage.NewMemory()
	for _, k := range []string{"certificates/ca/b.example/b.crt", "certificates/ca/a.example/a.crt", "accounts/ca/ops.json"} {
		if err := s.Store(ctx, k, []byte("x")); err != nil {
			log.Fatal(err)
		}
	}
	keys, err := s.List(ctx, "certificates/")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(keys)
	// Output:
	// [certificates/ca/a.example/a.crt certificates/ca/b.example/b.crt]
}

func ExampleLockContext() {
	ctx := context.Background()
	var s storage.Storage = storage.NewMemory()

	lockCtx, unlock, err := storage.LockContext(ctx, s, "issue/example.com")
	if err != nil {
		log.Fatal(err)
	}
	// Do the work under lockCtx: it is cancelled if the lock is lost.
	if _, err := s.Load(lockCtx, "certificates/ca/example.com/example.com.crt"); errors.Is(err, fs.ErrNotExist) {
		err = s.Store(lockCtx, "certificates/ca/example.com/example.com.crt", []byte("new certificate"))
		fmt.Println("stored:", err)
	}
	if err := unlock(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// stored: <nil>
}

func ExampleWatcher() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := storage.NewMemory()

	events, err := s.Watch(ctx, "certificates/")
	if err != nil {
		log.Fatal(err)
	}
	if err := s.Store(ctx, "certificates/ca/example.com/example.com.crt", []byte("renewed")); err != nil {
		log.Fatal(err)
	}
	ev := <-events
	fmt.Println(ev.Key, ev.Deleted)
	// Output:
	// certificates/ca/example.com/example.com.crt false
}

func ExampleCheckKey() {
	fmt.Println(storage.CheckKey("certificates/ca/example.com/example.com.crt"))
	fmt.Println(errors.Is(storage.CheckKey("../etc/passwd"), storage.ErrInvalidKey))
	// Output:
	// <nil>
	// true
}
