package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"
)

// Watch implements [Watcher] by polling, so that it sees the changes of
// every process that shares the folder, on any file system: each call
// starts a goroutine that lists prefix and stats every key under it once
// per WatchInterval, and reports each key whose file appeared, disappeared
// or was replaced (another file, size or modification time) since the
// previous look. Several changes to one key within an interval are reported
// once; a change is reported up to one interval (plus the time to list)
// after it is made.
//
// The cost is one List of prefix and one Stat per key under it every
// interval, per Watch, and the memory to remember each key's file (a few
// hundred bytes per key): fine for the thousands of keys of one server's
// certificates, not for millions.
//
// The first listing is made before Watch returns; an error there (an
// unreadable folder, a closed FileStorage) is returned. Later failures to
// list are logged and retried at the next interval, without events. Events
// wait in a small buffer; when the receiver is behind, the goroutine waits
// for it (and does not poll meanwhile), so nothing is dropped. The channel
// is closed when ctx is done or s is closed; Close waits for the goroutine.
func (s *FileStorage) Watch(ctx context.Context, prefix string) (<-chan Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("storage: watch %q: %w", truncate(prefix), err)
	}
	seen, err := s.scan(ctx, prefix, nil)
	if err != nil {
		return nil, fmt.Errorf("storage: watch %q: %w", truncate(prefix), err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("storage: watch %q: %w", truncate(prefix), ErrClosed)
	}
	if s.stopWatch == nil {
		s.stopWatch = make(chan struct{})
	}
	stop := s.stopWatch
	s.watchers.Add(1)
	s.mu.Unlock()

	ch := make(chan Event, watchBuffer)
	go func() {
		defer s.watchers.Done()
		defer close(ch)
		s.poll(ctx, stop, prefix, seen, ch)
	}()
	return ch, nil
}

func (s *FileStorage) watchInterval() time.Duration {
	if s.WatchInterval > 0 {
		return s.WatchInterval
	}
	return time.Second
}

// poll compares the keys under prefix with seen every interval and sends
// the differences to ch, until ctx is done or stop is closed.
func (s *FileStorage) poll(ctx context.Context, stop <-chan struct{}, prefix string, seen map[string]fs.FileInfo, ch chan<- Event) {
	t := time.NewTicker(s.watchInterval())
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		case <-stop:
			return
		}
		now, err := s.scan(ctx, prefix, seen)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrClosed) {
				return
			}
			s.logger().Warn("storage: watch: cannot list; trying again", slog.String("prefix", truncate(prefix)), slog.Any("error", err))
			continue
		}
		for _, ev := range changes(seen, now) {
			select {
			case ch <- ev:
			case <-ctx.Done():
				return
			case <-stop:
				return
			}
		}
		seen = now
	}
}

// scan returns the file of each key under prefix. A key deleted between
// List and Stat is left out; a key whose file cannot be stat'ed for another
// reason keeps its file in prev, if any, so that a passing failure is not
// reported as a change.
func (s *FileStorage) scan(ctx context.Context, prefix string, prev map[string]fs.FileInfo) (map[string]fs.FileInfo, error) {
	keys, err := s.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	root, err := s.openRoot()
	if err != nil {
		return nil, err
	}
	files := make(map[string]fs.FileInfo, len(keys))
	for _, key := range keys {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		_, file := keyPath(key)
		fi, err := root.Stat(file)
		if err != nil {
			if old, ok := prev[key]; ok && !errors.Is(err, fs.ErrNotExist) {
				files[key] = old
				s.logger().Debug("storage: watch: cannot stat", slog.String("key", truncate(key)), slog.Any("error", err))
			}
			continue
		}
		if fi.Mode().IsRegular() {
			files[key] = fi
		}
	}
	return files, nil
}

// changes returns the events that turn before into after, sorted by key.
func changes(before, after map[string]fs.FileInfo) []Event {
	var evs []Event
	for key, fi := range after {
		old, ok := before[key]
		if !ok || !os.SameFile(old, fi) || old.Size() != fi.Size() || !old.ModTime().Equal(fi.ModTime()) {
			evs = append(evs, Event{Key: key})
		}
	}
	for key := range before {
		if _, ok := after[key]; !ok {
			evs = append(evs, Event{Key: key, Deleted: true})
		}
	}
	slices.SortFunc(evs, func(a, b Event) int { return strings.Compare(a.Key, b.Key) })
	return evs
}
