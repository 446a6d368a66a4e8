//go:build unix && !solaris && !aix

package storage

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// lockFile takes an exclusive flock(2) on f, which closing f releases. While
// another process holds it, it polls until ctx is done. On a file system
// without locks it does nothing.
func lockFile(ctx context.Context, f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		var ferr error
		if err := rc.Control(func(fd uintptr) {
			for {
				ferr = syscall.Flock(int(fd), syscall.LOCK_EX|syscall.LOCK_NB)
				if ferr != syscall.EINTR {
					return
				}
			}
		}); err != nil {
			return err
		}
		switch {
		case ferr == nil:
			return nil
		case errors.Is(ferr, syscall.ENOLCK), errors.Is(ferr, syscall.EOPNOTSUPP), errors.Is(ferr, syscall.ENOSYS):
			return nil
		case !errors.Is(ferr, syscall.EWOULDBLOCK):
			return &fs.PathError{Op: "flock", Path: f.Name(), Err: ferr}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
