package storage_test

import (
	"testing"

	"github.com/tlsmint/tlsmint/storage"
	"github.com/tlsmint/tlsmint/storage/storagetest"
)

func TestMemoryConformance(t *testing.T) {
	m := storage.NewMemory()
	storagetest.Run(t, func(t *testing.T) storage.Storage { return m })
}
