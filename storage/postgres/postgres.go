package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tlsmint/tlsmint/storage"

	"github.com/tlsmint/tlsmint/storage/internal/wake"
)

// Config configures [New]. Only DSN is required; every other field has a
// default when zero.
type Config struct {
	// DSN is the connection string, as a URL
	// ("postgres://user@host:5432/db?sslmode=verify-full") or as key=value
	// pairs, in any form pgx accepts. Required. Its pool parameters size
	// and age the pool of connections the calls use: pool_max_conns
	// (default 4, or the number of CPUs if more), pool_max_conn_idle_time
	// (30m), pool_max_conn_lifetime (1h), pool_max_conn_lifetime_jitter
	// (0), pool_min_conns (0), pool_health_check_period (1m) and
	// pool_ping_timeout (none); Watch uses one connection more.
	DSN string

	// TablePrefix starts the name of every table, sequence, function and
	// notification channel this backend creates, so several independent
	// stores can share a database. It must match ^[a-z_][a-z0-9_]{0,39}$.
	// Zero means "tlsmint_".
	TablePrefix string

	// LockTTL is how long a lock lease lasts without renewal: the longest a
	// dead holder can block the others. Holders renew it every LockTTL/4.
	// Zero means 20 seconds.
	LockTTL time.Duration

	// LockPollInterval is how often a waiting Lock tries again. Zero means
	// 250 milliseconds. Waiters on the same Storage are also woken at once
	// when one of its locks is released.
	LockPollInterval time.Duration

	// Logger receives warnings about lost locks and lost connections. Nil
	// means no logging.
	Logger *slog.Logger
}

// Storage is a [storage.Storage] kept in PostgreSQL, for a fleet of servers
// that share certificates. It also implements [storage.Watcher] (with
// LISTEN/NOTIFY) and [storage.LockerWithContext] (with leases and fencing).
//
// Values live in one table (key, value, modified); each Store or Delete is a
// single statement, so a value is never half-written, even when the
// connection drops in the middle. Locks are leases (name, owner, expiry,
// fencing token) whose expiry is set and compared by the database server's
// clock only, so the clocks of the nodes do not matter. Create one with
// [New]; it is safe for concurrent use. Call [Storage.Close] when done.
type Storage struct {
	cfg    Config
	n      names
	pool   *pgxpool.Pool
	broken atomic.Int64 // connections found broken by a call
	log    *slog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	held   map[*lease]struct{}
	wake   wake.Signal // broadcast when a lock is released

	lmu       sync.Mutex
	subs      map[*subscriber]struct{}
	listening bool
	ready     chan struct{} // closed once the listener first listens
}

// New connects to the database, creates or upgrades the schema (versioned
// migrations, safe when several nodes start at once) and returns the store.
// It starts one goroutine, the pool's health check (it closes connections
// idle or open for too long); heartbeats start with each lock, the
// listener with the first Watch.
func New(ctx context.Context, cfg Config) (*Storage, error) {
	if cfg.DSN == "" {
		return nil, errors.New("postgres: Config.DSN is empty")
	}
	if cfg.TablePrefix == "" {
		cfg.TablePrefix = "tlsmint_"
	}
	if cfg.LockTTL <= 0 {
		cfg.LockTTL = 20 * time.Second
	}
	if cfg.LockPollInterval <= 0 {
		cfg.LockPollInterval = 250 * time.Millisecond
	}
	n, err := newNames(cfg.TablePrefix)
	if err != nil {
		return nil, err
	}
	pool, err := newPool(cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Storage{cfg: cfg, n: n, pool: pool, log: log}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	err = s.with(ctx, idempotent, func(c *pgx.Conn) error { return migrate(ctx, c, n) })
	if err != nil {
		s.pool.Close()
		s.cancel()
		return nil, fmt.Errorf("postgres: creating the schema: %w", err)
	}
	return s, nil
}

func (s *Storage) begin(ctx context.Context, op, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("postgres: %s %q: %w", op, key, err)
	}
	if err := storage.CheckKey(key); err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return fmt.Errorf("postgres: %s %q: %w", op, key, storage.ErrClosed)
	}
	return nil
}

func wrap(op, key string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("postgres: %s %q: %w", op, key, err)
}

// Store implements [storage.Storage.Store] with one INSERT … ON CONFLICT
// statement. With a context from [Storage.LockContext], the write is fenced:
// it happens only if that lease is still held, and otherwise fails with
// [storage.ErrLockLost].
func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	if err := s.begin(ctx, "store", key); err != nil {
		return err
	}
	if value == nil {
		value = []byte{}
	}
	l, fenced := s.leaseFrom(ctx)
	err := s.with(ctx, idempotent, func(c *pgx.Conn) error {
		if !fenced {
			_, err := c.Exec(ctx, s.n.expand(`INSERT INTO {values} (key, value, modified) VALUES ($1, $2, now())
				ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, modified = EXCLUDED.modified`), key, value)
			return err
		}
		tag, err := c.Exec(ctx, s.n.expand(`WITH lease AS (
				SELECT 1 FROM {locks} WHERE name = $3 AND owner = $4 AND token = $5 AND expires > now() FOR SHARE)
			INSERT INTO {values} (key, value, modified) SELECT $1, $2, now() FROM lease
			ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, modified = EXCLUDED.modified`),
			key, value, l.name, l.owner, l.token)
		if err == nil && tag.RowsAffected() == 0 {
			err = l.fencedError()
		}
		return err
	})
	return wrap("store", key, err)
}

// Load implements [storage.Storage.Load].
func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	if err := s.begin(ctx, "load", key); err != nil {
		return nil, err
	}
	var value []byte
	err := s.with(ctx, idempotent, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, s.n.expand(`SELECT value FROM {values} WHERE key = $1`), key).Scan(&value)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, wrap("load", key, fs.ErrNotExist)
	}
	if err != nil {
		return nil, wrap("load", key, err)
	}
	if value == nil {
		value = []byte{}
	}
	return value, nil
}

// Delete implements [storage.Storage.Delete]. With a context from
// [Storage.LockContext] it is fenced like [Storage.Store].
func (s *Storage) Delete(ctx context.Context, key string) error {
	if err := s.begin(ctx, "delete", key); err != nil {
		return err
	}
	l, fenced := s.leaseFrom(ctx)
	err := s.with(ctx, idempotent, func(c *pgx.Conn) error {
		if !fenced {
			_, err := c.Exec(ctx, s.n.expand(`DELETE FROM {values} WHERE key = $1`), key)
			return err
		}
		var held bool
		err := c.QueryRow(ctx, s.n.expand(`WITH lease AS (
				SELECT 1 FROM {locks} WHERE name = $2 AND owner = $3 AND token = $4 AND expires > now() FOR SHARE),
			gone AS (DELETE FROM {values} WHERE key = $1 AND EXISTS (SELECT 1 FROM lease) RETURNING 1)
			SELECT EXISTS (SELECT 1 FROM lease)`), key, l.name, l.owner, l.token).Scan(&held)
		if err == nil && !held {
			err = l.fencedError()
		}
		return err
	})
	return wrap("delete", key, err)
}

// List implements [storage.Storage.List]. Keys are sorted by the "C"
// collation, which is byte order.
func (s *Storage) List(ctx context.Context, prefix string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, wrap("list", prefix, err)
	}
	var keys []string
	err := s.with(ctx, idempotent, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, s.n.expand(`SELECT key FROM {values} WHERE key LIKE $1 ESCAPE '\' ORDER BY key`), likePrefix(prefix))
		if err != nil {
			return err
		}
		keys, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, wrap("list", prefix, err)
	}
	slices.Sort(keys) // already sorted; cheap insurance against a changed collation
	return keys, nil
}

func likePrefix(prefix string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(prefix) + "%"
}

// Stat implements [storage.Storage.Stat]. Modified is the database server's
// time of the last Store.
func (s *Storage) Stat(ctx context.Context, key string) (storage.KeyInfo, error) {
	if err := s.begin(ctx, "stat", key); err != nil {
		return storage.KeyInfo{}, err
	}
	info := storage.KeyInfo{Key: key}
	err := s.with(ctx, idempotent, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, s.n.expand(`SELECT modified, octet_length(value) FROM {values} WHERE key = $1`), key).
			Scan(&info.Modified, &info.Size)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.KeyInfo{}, wrap("stat", key, fs.ErrNotExist)
	}
	if err != nil {
		return storage.KeyInfo{}, wrap("stat", key, err)
	}
	return info, nil
}

// Close releases the locks still held through s (best effort: a lease that
// cannot be deleted expires on its own), stops the heartbeats and the
// listener, closes every connection and waits for its goroutines. Channels
// returned by Watch are closed. Later calls return [storage.ErrClosed].
func (s *Storage) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	held := slices.Collect(maps.Keys(s.held))
	s.mu.Unlock()
	var errs []error
	for _, l := range held {
		if err := l.unlock(); err != nil {
			errs = append(errs, err)
		}
	}
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.pool.Close()
	return errors.Join(errs...)
}
