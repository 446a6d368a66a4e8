//go:build !unix || solaris || aix

package storage

import (
	"context"
	"os"
)

// lockFile does nothing where this package uses no flock(2) (Windows,
// Solaris and illumos, AIX): there, two processes must not append to a
// journal as the same node at once.
func lockFile(context.Context, *os.File) error { return nil }
