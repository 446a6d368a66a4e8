package storage

import (
	"context"
	"errors"
	"time"
)

// Storage keeps values under slash-separated keys and provides named locks
// that are exclusive across every process sharing the same backing store.
//
// Keys look like file paths ("certificates/ca/example.com/example.com.json")
// and must satisfy [CheckKey]; a method given an invalid key returns an error
// wrapping [ErrInvalidKey]. A key names one value only: "a" and "a/b" are two
// independent keys that may both exist, and deleting one leaves the other.
//
// Every method honours its context: called with a context that is already
// done, it returns an error wrapping the context's error. Implementations
// must be safe for concurrent use by multiple goroutines.
//
// The methods:
//
//   - Store writes value under key, replacing any previous value. It is
//     atomic: a concurrent or later Load sees either the complete old value or
//     the complete new one, never a mixture or a truncated value, even if the
//     process or machine fails during the call. When Store returns nil the
//     value is durable. When it returns an error, the key holds either the old
//     or the new value. The caller may reuse value once Store returns.
//   - Load returns the value stored under key. If there is none it returns an
//     error wrapping [io/fs.ErrNotExist]; any other failure (permissions,
//     I/O, network) is reported as a different error and never wraps
//     [io/fs.ErrNotExist], so "missing" always means missing. The returned
//     slice belongs to the caller.
//   - Delete removes the value stored under key. Deleting a key that does not
//     exist is not an error: it returns nil. Keys that merely start with key
//     (such as key+"/x") are not affected.
//   - List returns every key that begins with prefix (a plain string prefix,
//     not only whole path segments: "certificates/ex" matches
//     "certificates/example.com/a.json"), at any depth, sorted in increasing
//     byte order, without duplicates. The empty prefix lists every key. No
//     match is not an error: the result is empty. Keys stored or deleted
//     while List runs may or may not be included.
//   - Stat returns the size and modification time of the value under key,
//     with the same not-found rule as Load.
//   - Lock blocks until it holds the lock called name, or until ctx is done,
//     in which case it returns an error wrapping ctx.Err() and holds nothing.
//     Lock names follow the same rules as keys but live in their own
//     namespace: a lock never creates, hides or conflicts with a key. On
//     success it returns unlock, which releases the lock; calling unlock more
//     than once is harmless (later calls return nil). Locks are not
//     re-entrant: a second Lock of the same name blocks even in the same
//     goroutine, until the first is released.
//
// # Locks across processes and failures
//
// While its holder is alive and can reach the backing store, a lock is held
// by exactly one caller in the whole cluster. Backends that are shared by
// several processes keep each lock alive with a heartbeat and let it expire
// when the heartbeat stops. When a holder dies (crash, kill, power loss)
// without calling unlock, the lock becomes available again after the
// backend's expiry period (documented by each backend), never earlier; a
// waiter then takes it over. A caller may therefore assume that:
//
//   - a crashed holder delays the others by at most the expiry period (plus
//     one polling interval), it never wedges them;
//   - the work the dead holder did under the lock may be partly done, so work
//     done under a lock must be idempotent and restartable (for example,
//     write the result with one Store at the end);
//   - a holder that is alive but cut off or frozen for longer than the expiry
//     period (a long GC pause, a suspended VM, a network partition) can lose
//     the lock without noticing at once, and two callers may then briefly
//     believe they hold it. Locks prevent duplicate work; they do not by
//     themselves protect data. Callers that must know when a lock is lost use
//     [LockContext], whose context is cancelled as soon as the backend
//     detects the loss, and backends that support fencing reject writes made
//     with that context after the loss.
//
// Unlock should be called with care for errors: a non-nil error from unlock
// means the release could not be confirmed (the lock then expires on its own)
// or the lock had already been lost ([ErrLockLost]).
type Storage interface {
	// Store writes value under key atomically, replacing any old value.
	Store(ctx context.Context, key string, value []byte) error
	// Load returns the value under key, or an error wrapping fs.ErrNotExist.
	Load(ctx context.Context, key string) ([]byte, error)
	// Delete removes key; deleting a missing key returns nil.
	Delete(ctx context.Context, key string) error
	// List returns all keys with the given prefix, sorted, at any depth.
	List(ctx context.Context, prefix string) ([]string, error)
	// Stat describes the value under key, or returns an error wrapping
	// fs.ErrNotExist.
	Stat(ctx context.Context, key string) (KeyInfo, error)
	// Lock acquires the cluster-wide lock called name and returns the
	// function that releases it.
	Lock(ctx context.Context, name string) (unlock func() error, err error)
}

// KeyInfo describes one stored value, as returned by [Storage.Stat].
type KeyInfo struct {
	// Key is the key that was asked for.
	Key string
	// Modified is when the value was last stored, by the backend's clock
	// (the local clock for files, the database server's for databases).
	Modified time.Time
	// Size is the length of the value in bytes.
	Size int64
}

// Watcher is an optional interface a [Storage] may implement to report
// changes as they happen, for example so that every node of a fleet picks up
// a renewed certificate at once.
//
// Watch returns a channel that receives an [Event] for each Store or Delete
// of a key that starts with prefix, made by any client of the same backing
// store (including this one) after Watch has returned. The channel is closed
// when ctx is done or the backend is closed. Events for one key arrive in the
// order of the changes, but delivery is best effort: a receiver that falls
// behind, or a lost connection to a shared store, can make events go
// missing, and several changes may be reported once or more than once.
// Watch is a hint to re-read, never a replacement for [Storage.Load]; callers
// that must not miss a change should also re-read periodically.
type Watcher interface {
	// Watch reports changes to keys under prefix until ctx is done.
	Watch(ctx context.Context, prefix string) (<-chan Event, error)
}

// Event is a change reported by a [Watcher].
type Event struct {
	// Key is the key that changed.
	Key string
	// Deleted is true when the key was deleted, false when it was stored.
	Deleted bool
}

// LockerWithContext is an optional interface a [Storage] may implement for
// callers that must know when a lock is lost.
//
// LockContext acquires the lock like [Storage.Lock] and also returns lockCtx,
// a child of ctx that is cancelled when ctx is done, when unlock is called,
// or when the backend finds that the lock was lost (its heartbeat could not
// be renewed in time, or another holder took it over). In the last case
// [context.Cause] of lockCtx is an error wrapping [ErrLockLost]. Work done
// under the lock should run under lockCtx so that it stops when the lock is
// lost; a backend that supports fencing also rejects writes made with lockCtx
// once the lock is lost.
//
// ctx governs both the wait and the life of lockCtx, but cancelling ctx does
// not release the lock: only unlock (or expiry) does.
type LockerWithContext interface {
	// LockContext acquires the lock called name and returns a context that
	// lives while the lock is held.
	LockContext(ctx context.Context, name string) (lockCtx context.Context, unlock func() error, err error)
}

// LockContext acquires the lock called name on s and returns a context that
// is cancelled when the lock is released or lost. It uses
// [LockerWithContext] when s implements it; otherwise it calls
// [Storage.Lock] and returns a context that is cancelled by unlock or ctx
// only, because such a backend cannot report a lost lock.
func LockContext(ctx context.Context, s Storage, name string) (lockCtx context.Context, unlock func() error, err error) {
	if l, ok := s.(LockerWithContext); ok {
		return l.LockContext(ctx, name)
	}
	release, err := s.Lock(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	lctx, cancel := context.WithCancelCause(ctx)
	return lctx, func() error {
		cancel(errUnlocked)
		return release()
	}, nil
}

// Errors returned (wrapped) by backends. Match them with [errors.Is].
var (
	// ErrInvalidKey is returned for a key or lock name that does not
	// satisfy [CheckKey].
	ErrInvalidKey = errors.New("storage: invalid key")
	// ErrLockLost is returned, or set as a context's cause, when a lock was
	// lost while held: its heartbeat failed for too long, or another holder
	// took it over after it had expired.
	ErrLockLost = errors.New("storage: lock lost")
	// ErrClosed is returned by a backend that has been closed.
	ErrClosed = errors.New("storage: closed")
)

// errUnlocked is the cause of a lock context cancelled by its unlock.
var errUnlocked = errors.New("storage: unlocked")
