package storage

import (
	"io"
	"io/fs"
	"os"
)

// Every change the file backend makes to its folder that needs room on the
// disk goes through the methods in this file, and with them through
// FileStorage.disk when it is set. Only tests set it (through
// export_test.go), with a simulated disk that fills up after a given number
// of bytes and changes: walking that number over every position of a write
// shows that a write cut short by a full disk anywhere leaves every value
// whole once space returns. Removing files and truncating them free space
// and do not ask.

// A disk stands between the file backend and its folder in tests.
type disk interface {
	// Room is called before each change that needs space: n > 0 bytes
	// about to be written to a file, or n == 0 for a change that writes
	// no data (creating a file or a folder, linking, renaming, syncing).
	// It returns how many of the n bytes fit and, when not all of them do
	// (for n == 0: when the change cannot be made), the error the change
	// fails with.
	Room(n int) (int, error)
	// Shrink is called before the backend truncates a file to take back
	// what it appended; an error makes the truncation fail.
	Shrink() error
}

// room asks s.disk, if set, for room for n bytes (see disk.Room); it
// returns how many fit, and the error to fail with when not all do.
func (s *FileStorage) room(n int) (int, error) {
	if s.disk == nil {
		return n, nil
	}
	k, err := s.disk.Room(n)
	k = max(0, min(k, n))
	if n == 0 && err != nil {
		return 0, err
	}
	if k < n && err == nil {
		err = io.ErrShortWrite
	}
	return k, err
}

// change asks for room for a change that writes no data: op on name.
func (s *FileStorage) change(op, name string) error {
	if _, err := s.room(0); err != nil {
		return &fs.PathError{Op: op, Path: name, Err: err}
	}
	return nil
}

// write writes b to f: at off, or at the file's offset when off < 0 (its
// end for a file opened with O_APPEND). When the disk has room for only
// part of b, that part is written and the error returned.
func (s *FileStorage) write(f *os.File, b []byte, off int64) error {
	k, room := s.room(len(b))
	var err error
	if off < 0 {
		_, err = f.Write(b[:k])
	} else {
		_, err = f.WriteAt(b[:k], off)
	}
	if err == nil && k < len(b) {
		err = &fs.PathError{Op: "write", Path: f.Name(), Err: room}
	}
	return err
}

// sync syncs f.
func (s *FileStorage) sync(f *os.File) error {
	if err := s.change("sync", f.Name()); err != nil {
		return err
	}
	return f.Sync()
}

// syncFolder syncs the folder dir, after a change to its entries.
func (s *FileStorage) syncFolder(root *os.Root, dir string) error {
	if err := s.change("sync", dir); err != nil {
		return err
	}
	return syncDir(root, dir)
}

// truncate cuts f back to size bytes.
func (s *FileStorage) truncate(f *os.File, size int64) error {
	if s.disk != nil {
		if err := s.disk.Shrink(); err != nil {
			return &fs.PathError{Op: "truncate", Path: f.Name(), Err: err}
		}
	}
	return f.Truncate(size)
}
