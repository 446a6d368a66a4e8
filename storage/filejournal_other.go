//go:build !unix

package storage

import (
	"context"
	"os"
)

// lockFile does nothing where the system has no flock(2): there, two
// processes must not append to a journal as the same node at once.
func lockFile(context.Context, *os.File) error { return nil }
