package autotls

import (
	"context"
	"crypto"

	"github.com/tlsmint/tlsmint/storage"
)

// StoreForTest writes a certificate chain and key for name into store where
// a Manager for directory finds it, as if it had been obtained.
func StoreForTest(ctx context.Context, store storage.Storage, directory, name string, chainPEM []byte, key crypto.Signer) error {
	data, err := encodeStored(name, directory, chainPEM, key, "", "")
	if err != nil {
		return err
	}
	return store.Store(ctx, "certificates/"+issuerKey(directory)+"/"+storageName(name)+".json", data)
}
