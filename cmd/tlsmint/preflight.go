package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tlsmint/tlsmint/storage"
)

// Checks made before the first ACME request, so that a certificate the CA
// issues is never lost to a destination that cannot be written: each try
// counts against the CA's duplicate-certificate limit.

// checkWritable reports whether path can be written the way writeFiles
// writes it: path is not a folder, and its folder — or, when that does
// not exist yet, the nearest folder above it, under which writeFiles
// creates the rest — accepts a new file (one is created and removed).
func checkWritable(path string) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a folder", path)
	}
	dir := filepath.Dir(path)
	for {
		fi, err := os.Stat(dir)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s is not a folder", dir)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		up := filepath.Dir(dir)
		if up == dir {
			return err
		}
		dir = up
	}
	f, err := os.CreateTemp(dir, ".tlsmint-probe-*")
	if err != nil {
		return fmt.Errorf("cannot create a file in %s: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("cannot remove a file in %s: %w", dir, err)
	}
	return nil
}

// probeKeyPrefix starts the key checkStorage writes, beside the certificates.
const probeKeyPrefix = "certificates/.tlsmint-cli-probe-"

// checkStorage reports whether store accepts what storing a certificate
// needs: a lock, and a value written and deleted under "certificates/".
func checkStorage(ctx context.Context, store storage.Storage) error {
	unlock, err := store.Lock(ctx, "tlsmint-cli/probe")
	if err != nil {
		return fmt.Errorf("taking a lock: %w", err)
	}
	defer unlock()
	b := make([]byte, 8)
	rand.Read(b)
	key := probeKeyPrefix + hex.EncodeToString(b)
	if err := store.Store(ctx, key, []byte("probe")); err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	if err := store.Delete(ctx, key); err != nil {
		return fmt.Errorf("deleting what it wrote: %w", err)
	}
	return nil
}

// rescue writes an issued chain and its key to a new file (mode 0600)
// when they could not be written where asked, and returns its path: in
// the temporary folder, else the working folder.
func rescue(name, serial string, chainPEM, keyPEM []byte) (string, error) {
	base := "tlsmint-issued-" + fileBase(name) + "-" + serial + ".pem"
	var errs []error
	for _, dir := range []string{os.TempDir(), "."} {
		p := filepath.Join(dir, base)
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		err := writeNew(p, append(append([]byte{}, keyPEM...), chainPEM...))
		if err == nil {
			return p, nil
		}
		errs = append(errs, err)
	}
	return "", errors.Join(errs...)
}

// writeNew writes data to a file that must not exist yet, mode 0600,
// synced.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}
