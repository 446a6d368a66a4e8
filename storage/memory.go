package storage

import (
	"context"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"
)

// MemoryStorage is a [Storage] that keeps everything in memory, for tests and
// for programs that run as a single process and need nothing persisted. It
// also implements [Watcher] and [LockerWithContext]. Its locks never expire:
// they are held until unlocked, since a holder cannot die without taking the
// whole process, and so the store, with it.
//
// Create one with [NewMemory]. It is safe for concurrent use.
type MemoryStorage struct {
	mu       sync.Mutex
	values   map[string]memValue
	locks    map[string]chan struct{} // closed when the lock is released
	watchers map[*memWatcher]struct{}
}

type memValue struct {
	data     []byte
	modified time.Time
}

type memWatcher struct {
	prefix string
	ch     chan Event
}

// watchBuffer is how many undelivered events a watcher may queue before
// further events for it are dropped.
const watchBuffer = 64

// NewMemory returns an empty in-memory store.
func NewMemory() *MemoryStorage {
	return &MemoryStorage{
		values:   make(map[string]memValue),
		locks:    make(map[string]chan struct{}),
		watchers: make(map[*memWatcher]struct{}),
	}
}

func begin(ctx context.Context, op, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("storage: %s %q: %w", op, truncate(key), err)
	}
	if err := CheckKey(key); err != nil {
		return fmt.Errorf("storage: %s: %w", op, err)
	}
	return nil
}

// Store implements [Storage.Store].
func (m *MemoryStorage) Store(ctx context.Context, key string, value []byte) error {
	if err := begin(ctx, "store", key); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.values[key] = memValue{data: slices.Clone(value), modified: time.Now()}
	m.notifyLocked(Event{Key: key})
	return nil
}

// Load implements [Storage.Load].
func (m *MemoryStorage) Load(ctx context.Context, key string) ([]byte, error) {
	if err := begin(ctx, "load", key); err != nil {
		return nil, err
	}
	m.mu.Lock()
	v, ok := m.values[key]
	m.mu.Unlock()
	if !ok {
		return nil, notExist("load", key)
	}
	out := make([]byte, len(v.data))
	copy(out, v.data)
	return out, nil
}

// Delete implements [Storage.Delete].
func (m *MemoryStorage) Delete(ctx context.Context, key string) error {
	if err := begin(ctx, "delete", key); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.values[key]; ok {
		delete(m.values, key)
		m.notifyLocked(Event{Key: key, Deleted: true})
	}
	return nil
}

// List implements [Storage.List].
func (m *MemoryStorage) List(ctx context.Context, prefix string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("storage: list %q: %w", truncate(prefix), err)
	}
	m.mu.Lock()
	var keys []string
	for k := range m.values {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	m.mu.Unlock()
	slices.Sort(keys)
	return keys, nil
}

// Stat implements [Storage.Stat].
func (m *MemoryStorage) Stat(ctx context.Context, key string) (KeyInfo, error) {
	if err := begin(ctx, "stat", key); err != nil {
		return KeyInfo{}, err
	}
	m.mu.Lock()
	v, ok := m.values[key]
	m.mu.Unlock()
	if !ok {
		return KeyInfo{}, notExist("stat", key)
	}
	return KeyInfo{Key: key, Modified: v.modified, Size: int64(len(v.data))}, nil
}

// Lock implements [Storage.Lock]. The lock is held until unlock is called.
func (m *MemoryStorage) Lock(ctx context.Context, name string) (func() error, error) {
	_, unlock, err := m.LockContext(ctx, name)
	return unlock, err
}

// LockContext implements [LockerWithContext]. Since in-memory locks cannot be
// lost, lockCtx is cancelled only by ctx or unlock.
func (m *MemoryStorage) LockContext(ctx context.Context, name string) (context.Context, func() error, error) {
	if err := begin(ctx, "lock", name); err != nil {
		return nil, nil, err
	}
	for {
		m.mu.Lock()
		held, busy := m.locks[name]
		if !busy {
			released := make(chan struct{})
			m.locks[name] = released
			m.mu.Unlock()
			lockCtx, cancel := context.WithCancelCause(ctx)
			var once sync.Once
			return lockCtx, func() error {
				once.Do(func() {
					m.mu.Lock()
					delete(m.locks, name)
					m.mu.Unlock()
					close(released)
					cancel(errUnlocked)
				})
				return nil
			}, nil
		}
		m.mu.Unlock()
		select {
		case <-held:
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("storage: lock %q: %w", truncate(name), ctx.Err())
		}
	}
}

// Watch implements [Watcher]. Events are delivered through a buffer; when a
// receiver falls more than a few dozen events behind, further events for it
// are dropped until it catches up.
func (m *MemoryStorage) Watch(ctx context.Context, prefix string) (<-chan Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("storage: watch %q: %w", truncate(prefix), err)
	}
	w := &memWatcher{prefix: prefix, ch: make(chan Event, watchBuffer)}
	m.mu.Lock()
	m.watchers[w] = struct{}{}
	m.mu.Unlock()
	context.AfterFunc(ctx, func() {
		m.mu.Lock()
		delete(m.watchers, w)
		close(w.ch)
		m.mu.Unlock()
	})
	return w.ch, nil
}

func (m *MemoryStorage) notifyLocked(ev Event) {
	for w := range m.watchers {
		if strings.HasPrefix(ev.Key, w.prefix) {
			select {
			case w.ch <- ev:
			default: // receiver is behind: drop, as documented
			}
		}
	}
}

func notExist(op, key string) error {
	return fmt.Errorf("storage: %s %q: %w", op, truncate(key), fs.ErrNotExist)
}
