package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path"
	"slices"

	"sync"
	"time"
)

// fileLock is one held lock of a FileStorage.
type fileLock struct {
	s      *FileStorage
	root   *os.Root
	name   string
	path   string
	owner  string
	host   string   // the host name when the lock was taken, the same in every refresh
	f      *os.File // the lock file we created, whatever its name points to now
	stop   chan struct{}
	done   chan struct{}
	cancel context.CancelCauseFunc

	mu        sync.Mutex
	released  bool
	abandoned bool
	lost      error
}

// lockRecord is the content of a lock file. Beat has a fixed width and the
// other fields do not change, so every refresh rewrites the same number of
// bytes in place, and a refresh that a full disk cuts short leaves a whole
// record: the old one with some digits of the new beat.
type lockRecord struct {
	Owner string `json:"owner"`
	Host  string `json:"host"`
	PID   int    `json:"pid"`
	Beat  string `json:"beat"`
}

func (l *fileLock) record(beat uint64) []byte {
	b, _ := json.Marshal(lockRecord{Owner: l.owner, Host: l.host, PID: os.Getpid(), Beat: fmt.Sprintf("%020d", beat)})
	return append(b, '\n')
}

// observation is what a waiter saw of a lock file.
type observation struct {
	info    fs.FileInfo
	content string
}

func (o observation) same(p observation) bool {
	return o.info != nil && p.info != nil && os.SameFile(o.info, p.info) &&
		o.content == p.content && o.info.Size() == p.info.Size() &&
		o.info.ModTime().Equal(p.info.ModTime())
}

// valid reports whether the content is a lock record, not an empty or
// damaged file.
func (o observation) valid() bool {
	var r lockRecord
	return json.Unmarshal([]byte(o.content), &r) == nil && r.Owner != ""
}

func observe(root *os.Root, name string) (observation, error) {
	f, err := root.Open(name)
	if err != nil {
		return observation{}, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return observation{}, err
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return observation{}, err
	}
	return observation{info: info, content: string(b)}, nil
}

// staleWatch tracks how long one file has stayed unchanged, by the local
// monotonic clock.
type staleWatch struct {
	last  observation
	since time.Time
}

// update records o and reports whether it is unchanged since first seen for
// at least stale, and whether it is new.
func (w *staleWatch) update(o observation, stale time.Duration) (isStale, isNew bool) {
	if !o.same(w.last) {
		w.last, w.since = o, time.Now()
		return false, true
	}
	return time.Since(w.since) >= stale, false
}

// Lock implements [Storage.Lock] with a lock file; see [FileStorage].
func (s *FileStorage) Lock(ctx context.Context, name string) (func() error, error) {
	_, unlock, err := s.LockContext(ctx, name)
	return unlock, err
}

// LockContext implements [LockerWithContext]. lockCtx is cancelled with
// [ErrLockLost] when the heartbeat finds that the lock file was removed or
// replaced by another process, or when it could not refresh the file for
// StaleAfter/2.
func (s *FileStorage) LockContext(ctx context.Context, name string) (context.Context, func() error, error) {
	root, err := s.start(ctx, "lock", name)
	if err != nil {
		return nil, nil, err
	}
	dir, file := keyPath(name)
	dir, file = path.Join(locksDir, dir), path.Join(locksDir, file)
	guard := path.Join(dir, "."+path.Base(file)+".takeover")
	var lockWatch, guardWatch staleWatch
	log := s.logger().With("lock", name)
	for {
		wake := s.wake.C()
		l, err := s.tryLock(root, name, dir, file)
		if err == nil {
			return l.start(ctx)
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, nil, fmt.Errorf("storage: lock %q: %w", truncate(name), err)
		}
		obs, err := observe(root, file)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue // released in the meantime
		case err != nil:
			return nil, nil, fmt.Errorf("storage: lock %q: %w", truncate(name), err)
		}
		stale, isNew := lockWatch.update(obs, s.staleAfter())
		if isNew && !obs.valid() {
			log.Warn("storage: lock file is empty or damaged; it will be taken over if it stays unchanged",
				slog.String("file", file), slog.Duration("stale_after", s.staleAfter()))
		}
		if stale {
			if s.takeOver(root, file, guard, obs, &guardWatch, log) {
				continue
			}
		}
		poll := s.pollInterval()
		t := time.NewTimer(poll/2 + rand.N(poll))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, fmt.Errorf("storage: lock %q: %w", truncate(name), ctx.Err())
		case <-wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// tryLock creates the lock file atomically, complete with its content, by
// linking a finished temporary file to its name; it fails with
// fs.ErrExist when the lock is held. On any other error (a full disk)
// neither the lock file nor the temporary file is left behind.
func (s *FileStorage) tryLock(root *os.Root, name, dir, file string) (*fileLock, error) {
	if err := s.mkdirs(root, dir); err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	l := &fileLock{s: s, root: root, name: name, path: file, owner: randomName() + randomName(), host: host}
	tmp := path.Join(dir, ".tmp-"+randomName())
	if err := s.change("open", tmp); err != nil {
		return nil, err
	}
	f, err := root.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	err = s.write(f, l.record(0), -1)
	if err == nil {
		err = s.sync(f)
	}
	if err == nil {
		err = root.Link(tmp, file)
		// Asked after the link, so that a held lock is fs.ErrExist
		// whatever the disk, as on a real one.
		if err == nil {
			if err = s.change("link", file); err != nil {
				_ = root.Remove(file)
			}
		}
	}
	_ = root.Remove(tmp)
	if err == nil {
		err = s.syncFolder(root, dir)
		if err != nil {
			_ = root.Remove(file)
		}
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	l.f = f
	return l, nil
}

// takeOver removes the stale lock file last seen as obs, under a guard file
// so that two waiters cannot both remove it (one removing the other's fresh
// lock). It reports whether the caller should try to lock again at once.
func (s *FileStorage) takeOver(root *os.Root, file, guard string, obs observation, gw *staleWatch, log *slog.Logger) bool {
	g, err := s.tryLock(root, "", path.Dir(guard), guard)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			// Another waiter is taking over, or died doing so.
			if gobs, err := observe(root, guard); err == nil {
				if stale, _ := gw.update(gobs, s.staleAfter()); stale {
					log.Warn("storage: removing a stale lock take-over guard", slog.String("file", guard))
					_ = root.Remove(guard)
					return true
				}
			}
		}
		return false
	}
	defer func() {
		_ = g.f.Close()
		_ = root.Remove(guard)
	}()
	cur, err := observe(root, file)
	if errors.Is(err, fs.ErrNotExist) {
		return true
	}
	if err != nil || !cur.same(obs) {
		return false // it changed: its holder is alive after all
	}
	var r lockRecord
	_ = json.Unmarshal([]byte(obs.content), &r)
	log.Warn("storage: taking over a stale lock", slog.String("file", file),
		slog.String("owner", r.Owner), slog.String("host", r.Host), slog.Int("pid", r.PID),
		slog.Duration("unchanged_for", s.staleAfter()))
	if err := root.Remove(file); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warn("storage: cannot remove a stale lock file", slog.String("file", file), slog.Any("error", err))
		return false
	}
	return true
}

// heldLocks returns the locks held through s at the time of the call.
func (s *FileStorage) heldLocks() []*fileLock {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Collect(maps.Keys(s.held))
}

// start registers the held lock and starts its heartbeat.
func (l *fileLock) start(ctx context.Context) (context.Context, func() error, error) {
	lockCtx, cancel := context.WithCancelCause(ctx)
	l.cancel, l.stop, l.done = cancel, make(chan struct{}), make(chan struct{})
	l.s.mu.Lock()
	if l.s.held == nil {
		l.s.held = make(map[*fileLock]struct{})
	}
	l.s.held[l] = struct{}{}
	l.s.mu.Unlock()
	go l.heartbeat()
	return lockCtx, l.unlock, nil
}

func (l *fileLock) heartbeat() {
	defer close(l.done)
	interval, stale := l.s.refreshInterval(), l.s.staleAfter()
	t := time.NewTicker(interval)
	defer t.Stop()
	lastOK := time.Now()
	for beat := uint64(1); ; beat++ {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		err := l.refresh(beat)
		switch {
		case errors.Is(err, ErrLockLost):
		case err != nil && time.Since(lastOK) >= stale/2:
			err = fmt.Errorf("%w: lock file not refreshed for %v: %w", ErrLockLost, time.Since(lastOK).Round(time.Millisecond), err)
		case err != nil:
			l.s.logger().Warn("storage: cannot refresh lock file", slog.String("lock", l.name), slog.Any("error", err))
			continue
		default:
			lastOK = time.Now()
			continue
		}
		l.s.logger().Warn("storage: lock lost", slog.String("lock", l.name), slog.Any("error", err))
		l.mu.Lock()
		l.lost = err
		l.mu.Unlock()
		l.cancel(err)
		return
	}
}

// refresh checks that the lock file is still ours and rewrites its
// heartbeat in place, through our own descriptor, so that it can never
// overwrite a lock file that another process has put in its place.
func (l *fileLock) refresh(beat uint64) error {
	if !l.isOurs() {
		return fmt.Errorf("%w: lock file %s was removed or replaced by another process", ErrLockLost, l.path)
	}
	if err := l.s.write(l.f, l.record(beat), 0); err != nil {
		return err
	}
	return l.s.sync(l.f)
}

func (l *fileLock) isOurs() bool {
	cur, err := l.root.Stat(l.path)
	if err != nil {
		return false
	}
	mine, err := l.f.Stat()
	return err == nil && os.SameFile(cur, mine)
}

// unlock stops the heartbeat and removes the lock file if it is still ours.
func (l *fileLock) unlock() error {
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return nil
	}
	l.released = true
	abandoned := l.abandoned
	l.mu.Unlock()
	if abandoned {
		return nil
	}
	close(l.stop)
	<-l.done
	var err error
	l.mu.Lock()
	lost := l.lost
	l.mu.Unlock()
	switch {
	case lost != nil:
		err = lost
	case !l.isOurs():
		err = fmt.Errorf("%w: lock file %s was removed or replaced by another process", ErrLockLost, l.path)
	default:
		if rerr := l.root.Remove(l.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = rerr
		}
	}
	_ = l.f.Close()
	l.cancel(errUnlocked)
	l.s.mu.Lock()
	delete(l.s.held, l)
	l.s.mu.Unlock()
	l.s.wake.Broadcast()
	if err != nil {
		return fmt.Errorf("storage: unlock %q: %w", truncate(l.name), err)
	}
	return nil
}

// abandon stops the heartbeat and forgets the lock without removing its
// file, as if the process had died. Used by tests.
func (l *fileLock) abandon() {
	l.mu.Lock()
	if l.released || l.abandoned {
		l.mu.Unlock()
		return
	}
	l.abandoned = true
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	_ = l.f.Close()
	l.s.mu.Lock()
	delete(l.s.held, l)
	l.s.mu.Unlock()
}
