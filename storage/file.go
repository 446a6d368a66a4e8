package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tlsmint/tlsmint/storage/internal/wake"
)

// FileStorage is a [Storage] that keeps each value in a file under one
// folder: the embedded default. It also implements [LockerWithContext], and
// [Watcher] by polling (see [FileStorage.Watch]).
//
// Create one with [Dir] or as a struct literal with Path set; set any other
// field before first use and do not change it afterwards. A FileStorage is
// safe for concurrent use, and several processes (on one machine, or on
// several sharing a network file system with hard links and close-to-open
// consistency, such as NFS) may use the same folder at once.
//
// Writes go to a temporary file that is synced, then renamed over the old
// file, then the folder is synced: a crash at any moment leaves the old value
// or the new one, and so does a write that fails part-way (a full disk),
// whose temporary file is removed. Lock files are made the same way, so a
// failed Lock leaves no lock behind. Journal appends (see [Journal]) are
// all or nothing: a failed one is cut back. Every path is opened through an [os.Root], so no key can
// reach outside the folder. Files are created with mode 0600 and folders with
// 0700, whatever the umask. Keys are mapped to file names by an escaping
// scheme that is injective, case-stable and reversible (see the package
// documentation).
//
// Locks are files under the ".locks" folder. A holder writes its owner and a
// heartbeat counter into its lock file every RefreshInterval. A waiter takes
// a lock over only when it has observed no change at all to the lock file
// (same file, same contents, same modification time) for StaleAfter, measured
// on its own monotonic clock; the clocks of holder and waiter are never
// compared, so clock skew between machines cannot break locks. A process that
// dies while holding a lock therefore stalls the others for at most
// StaleAfter plus one PollInterval. Empty or unreadable lock files are
// treated the same way: taken over once unchanged for StaleAfter.
type FileStorage struct {
	// Path is the folder that holds everything. It is created (mode 0700,
	// with any missing parents) on first use. Required.
	Path string

	// StaleAfter is how long a lock file must stay unchanged before a
	// waiter takes the lock over. Zero means 10 seconds. It must be well
	// above RefreshInterval plus the longest pause a holder may suffer.
	StaleAfter time.Duration

	// RefreshInterval is how often a holder refreshes its lock file. Zero
	// means StaleAfter/5 (2 seconds by default). Values not below
	// StaleAfter/2 are replaced by StaleAfter/5.
	RefreshInterval time.Duration

	// PollInterval is how often a waiting Lock looks at the lock file
	// again. Zero means 200 milliseconds. Waiters in the same FileStorage
	// are also woken at once when a lock is released.
	PollInterval time.Duration

	// WatchInterval is how often each [FileStorage.Watch] lists its prefix
	// to look for changes. Zero means 1 second.
	WatchInterval time.Duration

	// Logger receives warnings about stale or damaged lock files, lost
	// locks and failed watch listings. Nil means no logging.
	Logger *slog.Logger

	journalMu   sync.Mutex     // serialises this client's journal appends and trims
	journalCuts map[string]cut // appends that failed and could not be cut back yet, by file
	disk        disk           // nil but in tests: see filedisk.go

	mu        sync.Mutex
	root      *os.Root
	closed    bool
	held      map[*fileLock]struct{}
	wake      wake.Signal    // broadcast when a lock is released
	stopWatch chan struct{}  // closed by Close, to stop the watchers
	watchers  sync.WaitGroup // one per Watch goroutine
}

// Dir returns a [FileStorage] that keeps its data in the folder at path. It
// does no I/O: the folder is created on first use, and errors surface then.
func Dir(path string) *FileStorage {
	return &FileStorage{Path: path}
}

func (s *FileStorage) staleAfter() time.Duration {
	if s.StaleAfter > 0 {
		return s.StaleAfter
	}
	return 10 * time.Second
}

func (s *FileStorage) refreshInterval() time.Duration {
	stale := s.staleAfter()
	if r := s.RefreshInterval; r > 0 && r < stale/2 {
		return r
	}
	return stale / 5
}

func (s *FileStorage) pollInterval() time.Duration {
	if s.PollInterval > 0 {
		return s.PollInterval
	}
	return 200 * time.Millisecond
}

func (s *FileStorage) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// openRoot opens the folder, creating it if needed. A failure is not
// remembered: the next call tries again.
func (s *FileStorage) openRoot() (*os.Root, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.root != nil {
		return s.root, nil
	}
	if s.Path == "" {
		return nil, errors.New("storage: FileStorage.Path is empty")
	}
	if err := os.MkdirAll(s.Path, 0o700); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	root, err := os.OpenRoot(s.Path)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	s.root = root
	return root, nil
}

// start checks the context and the key and returns the folder.
func (s *FileStorage) start(ctx context.Context, op, key string) (*os.Root, error) {
	if err := begin(ctx, op, key); err != nil {
		return nil, err
	}
	root, err := s.openRoot()
	if err != nil {
		return nil, fmt.Errorf("storage: %s %q: %w", op, truncate(key), err)
	}
	return root, nil
}

// Store implements [Storage.Store]: temporary file, fsync, rename, fsync of
// the folder.
func (s *FileStorage) Store(ctx context.Context, key string, value []byte) error {
	root, err := s.start(ctx, "store", key)
	if err != nil {
		return err
	}
	dir, file := keyPath(key)
	// A concurrent Delete may remove a folder that has just become empty;
	// then the temporary file cannot be created and the write is retried.
	for attempt := 0; ; attempt++ {
		err = s.writeFileAtomic(root, dir, file, value)
		if err == nil || !errors.Is(err, fs.ErrNotExist) || attempt == 3 {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("storage: store %q: %w", truncate(key), err)
	}
	return nil
}

// writeFileAtomic writes value to file in dir through a temporary file:
// written, synced, renamed over file, and the folder synced. On an error
// before the rename (a full disk, say) the temporary file is removed and
// file is unchanged; an error from the last sync leaves the new value in
// place, maybe not yet durable.
func (s *FileStorage) writeFileAtomic(root *os.Root, dir, file string, value []byte) (err error) {
	if err := s.mkdirs(root, dir); err != nil {
		return err
	}
	tmp := path.Join(dir, ".tmp-"+randomName())
	if err := s.change("open", tmp); err != nil {
		return err
	}
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = root.Remove(tmp)
		}
	}()
	if err = s.write(f, value, -1); err != nil {
		return err
	}
	if err = s.sync(f); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = s.change("rename", tmp); err == nil {
		err = root.Rename(tmp, file)
	}
	if err != nil {
		return err
	}
	return s.syncFolder(root, dir)
}

// mkdirs creates dir and its missing parents with mode 0700, syncing the
// parent of each folder it creates.
func (s *FileStorage) mkdirs(root *os.Root, dir string) error {
	if dir == "." {
		return nil
	}
	if fi, err := root.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	parts := strings.Split(dir, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		if fi, err := root.Stat(p); err == nil && fi.IsDir() {
			continue
		}
		if err := s.change("mkdir", p); err != nil {
			return err
		}
		err := root.Mkdir(p, 0o700)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := s.syncFolder(root, path.Dir(p)); err != nil {
			return err
		}
	}
	return nil
}

func syncDir(root *os.Root, dir string) error {
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func randomName() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Load implements [Storage.Load].
func (s *FileStorage) Load(ctx context.Context, key string) ([]byte, error) {
	root, err := s.start(ctx, "load", key)
	if err != nil {
		return nil, err
	}
	_, file := keyPath(key)
	data, err := root.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("storage: load %q: %w", truncate(key), err)
	}
	return data, nil
}

// Delete implements [Storage.Delete]. Folders left empty are removed. A key
// that is missing, or whose folder a concurrent Delete removes meanwhile, is
// not an error.
func (s *FileStorage) Delete(ctx context.Context, key string) error {
	root, err := s.start(ctx, "delete", key)
	if err != nil {
		return err
	}
	dir, file := keyPath(key)
	if err := root.Remove(file); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("storage: delete %q: %w", truncate(key), err)
	}
	if testHookDeleted != nil {
		testHookDeleted(key)
	}
	// A sibling Delete that emptied the folder (or anyone else) may have
	// removed it since: the file went with it, and there is nothing left
	// to sync.
	if err := syncDir(root, dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("storage: delete %q: %w", truncate(key), err)
	}
	// Remove folders that became empty, deepest first; stop at the first
	// that is not empty (or that a concurrent Store has just filled).
	for dir != "." && root.Remove(dir) == nil {
		dir = path.Dir(dir)
	}
	return nil
}

// testHookDeleted, set only by tests, runs in Delete between the removal of
// the file and the sync of its folder.
var testHookDeleted func(key string)

// Stat implements [Storage.Stat].
func (s *FileStorage) Stat(ctx context.Context, key string) (KeyInfo, error) {
	root, err := s.start(ctx, "stat", key)
	if err != nil {
		return KeyInfo{}, err
	}
	_, file := keyPath(key)
	fi, err := root.Stat(file)
	if err != nil {
		return KeyInfo{}, fmt.Errorf("storage: stat %q: %w", truncate(key), err)
	}
	if !fi.Mode().IsRegular() {
		return KeyInfo{}, fmt.Errorf("storage: stat %q: %s is not a regular file", truncate(key), file)
	}
	return KeyInfo{Key: key, Modified: fi.ModTime(), Size: fi.Size()}, nil
}

// List implements [Storage.List]. It reads only the folders that can hold
// keys with the prefix.
func (s *FileStorage) List(ctx context.Context, prefix string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("storage: list %q: %w", truncate(prefix), err)
	}
	root, err := s.openRoot()
	if err != nil {
		return nil, fmt.Errorf("storage: list %q: %w", truncate(prefix), err)
	}
	// Whole segments of the prefix name a folder to start from.
	segs := strings.Split(prefix, "/")
	segs = segs[:len(segs)-1]
	start, keyPrefix := ".", ""
	if len(segs) > 0 {
		if CheckKey(strings.Join(segs, "/")) != nil {
			return nil, nil // no valid key can have this prefix
		}
		start, keyPrefix = dirPath(segs), strings.Join(segs, "/")+"/"
	}
	w := lister{ctx: ctx, root: root, prefix: prefix}
	if err := w.walk(start, keyPrefix, ""); err != nil {
		return nil, fmt.Errorf("storage: list %q: %w", truncate(prefix), err)
	}
	slices.Sort(w.keys)
	return w.keys, nil
}

type lister struct {
	ctx    context.Context
	root   *os.Root
	prefix string
	keys   []string
}

// walk lists folder dir, which holds keys starting with keyPrefix; pending
// is the escaped text of a long segment cut into pieces so far.
func (w *lister) walk(dir, keyPrefix, pending string) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	d, err := w.root.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // removed by a concurrent Delete
	}
	if err != nil {
		return err
	}
	entries, err := d.ReadDir(-1)
	_ = d.Close()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if name == "" || name[0] == '.' {
			continue // temporary files, locks
		}
		child := path.Join(dir, name)
		last := name[len(name)-1]
		switch {
		case e.IsDir() && last == contSuffix:
			if err := w.walk(child, keyPrefix, pending+name[:len(name)-1]); err != nil {
				return err
			}
		case e.IsDir() && last == dirSuffix:
			seg, ok := unescapeSegment(pending + name[:len(name)-1])
			if !ok {
				continue
			}
			kp := keyPrefix + seg + "/"
			if !strings.HasPrefix(kp, w.prefix) && !strings.HasPrefix(w.prefix, kp) {
				continue
			}
			if err := w.walk(child, kp, ""); err != nil {
				return err
			}
		case e.Type().IsRegular():
			seg, ok := unescapeSegment(pending + name)
			if !ok {
				continue
			}
			key := keyPrefix + seg
			if !strings.HasPrefix(key, w.prefix) || CheckKey(key) != nil {
				continue
			}
			if _, file := keyPath(key); file != child {
				continue // a name this backend would not have written
			}
			w.keys = append(w.keys, key)
		}
	}
	return nil
}

// Close releases every lock still held through s, stops every Watch (closing
// its channel) and waits for its goroutine, and closes the folder. Later
// calls on s return [ErrClosed]; calling Close again does nothing more.
func (s *FileStorage) Close() error {
	var errs []error
	for _, l := range s.heldLocks() {
		if err := l.unlock(); err != nil {
			errs = append(errs, err)
		}
	}
	s.mu.Lock()
	s.closed = true
	if s.stopWatch == nil {
		s.stopWatch = make(chan struct{})
	}
	select {
	case <-s.stopWatch:
	default:
		close(s.stopWatch)
	}
	s.mu.Unlock()
	s.watchers.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.root != nil {
		errs = append(errs, s.root.Close())
		s.root = nil
	}
	return errors.Join(errs...)
}
