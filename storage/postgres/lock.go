package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tlsmint/tlsmint/storage"
)

// lease is one held lock.
type lease struct {
	s      *Storage
	name   string
	owner  string
	token  int64
	prefix string // table prefix, to fence only writes to the same tables
	cancel context.CancelCauseFunc
	stop   chan struct{}
	done   chan struct{}

	mu        sync.Mutex
	released  bool
	abandoned bool
	lost      error
}

type leaseKey struct{}

func (s *Storage) leaseFrom(ctx context.Context) (*lease, bool) {
	l, ok := ctx.Value(leaseKey{}).(*lease)
	if !ok || l.prefix != s.n.prefix {
		return nil, false
	}
	return l, true
}

func (l *lease) fencedError() error {
	return fmt.Errorf("%w: write fenced: lease %q (token %d) is no longer held", storage.ErrLockLost, l.name, l.token)
}

// FencingToken returns the fencing token of the lease whose context is ctx
// (or an ancestor of ctx), as returned by [Storage.LockContext]. Tokens
// increase with every acquisition of any lock, so a system outside this
// store can reject work from a holder whose token is older than one it has
// already seen.
func FencingToken(ctx context.Context) (token int64, ok bool) {
	l, ok := ctx.Value(leaseKey{}).(*lease)
	if !ok {
		return 0, false
	}
	return l.token, true
}

func ms(d time.Duration) int64 { return d.Milliseconds() }

// Lock implements [storage.Storage.Lock] with a lease; see
// [Storage.LockContext].
func (s *Storage) Lock(ctx context.Context, name string) (func() error, error) {
	_, unlock, err := s.LockContext(ctx, name)
	return unlock, err
}

// LockContext implements [storage.LockerWithContext]. The lock is a lease
// row that expires LockTTL after its last renewal, by the database's clock;
// a heartbeat renews it every LockTTL/4. A waiter takes it over once it has
// expired.
//
// lockCtx is cancelled with [storage.ErrLockLost] when a renewal finds the
// lease taken over, or when no renewal has succeeded for LockTTL/2 (a lost
// connection): in both cases before another node can have taken it, unless
// this process was frozen. lockCtx also carries the lease: Store and Delete
// given lockCtx (or a context derived from it, even through
// [context.WithoutCancel]) succeed only while the lease is held, checked in
// the same statement, so a holder that lost its lease can never overwrite a
// newer value. Use [FencingToken] to fence other systems.
func (s *Storage) LockContext(ctx context.Context, name string) (context.Context, func() error, error) {
	if err := s.begin(ctx, "lock", name); err != nil {
		return nil, nil, err
	}
	owner := randomOwner()
	for {
		wake := s.wake.C()
		var token int64
		err := s.with(ctx, idempotent, func(c *pgx.Conn) error {
			return c.QueryRow(ctx, s.n.expand(`INSERT INTO {locks} (name, owner, expires, token)
				VALUES ($1, $2, now() + $3 * interval '1 millisecond', nextval('{fence}'))
				ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, expires = EXCLUDED.expires, token = EXCLUDED.token
				WHERE {locks}.expires <= now() OR {locks}.owner = EXCLUDED.owner
				RETURNING token`), name, owner, ms(s.cfg.LockTTL)).Scan(&token)
		})
		if err == nil {
			return s.hold(ctx, name, owner, token)
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return nil, nil, wrap("lock", name, err)
		}
		poll := s.cfg.LockPollInterval
		t := time.NewTimer(poll/2 + mrand.N(poll))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, wrap("lock", name, ctx.Err())
		case <-wake:
			t.Stop()
		case <-t.C:
		}
	}
}

func randomOwner() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Storage) hold(ctx context.Context, name, owner string, token int64) (context.Context, func() error, error) {
	l := &lease{s: s, name: name, owner: owner, token: token, prefix: s.n.prefix,
		stop: make(chan struct{}), done: make(chan struct{})}
	lockCtx, cancel := context.WithCancelCause(context.WithValue(ctx, leaseKey{}, l))
	l.cancel = cancel
	s.mu.Lock()
	if s.held == nil {
		s.held = make(map[*lease]struct{})
	}
	s.held[l] = struct{}{}
	s.mu.Unlock()
	s.wg.Add(1)
	go l.heartbeat()
	return lockCtx, l.unlock, nil
}

func (l *lease) heartbeat() {
	defer l.s.wg.Done()
	defer close(l.done)
	ttl := l.s.cfg.LockTTL
	t := time.NewTicker(ttl / 4)
	defer t.Stop()
	lastOK := time.Now()
	for {
		select {
		case <-l.stop:
			return
		case <-l.s.ctx.Done():
			return
		case <-t.C:
		}
		sent := time.Now()
		err := l.renew(ttl / 4)
		switch {
		case errors.Is(err, storage.ErrLockLost):
		case err != nil && time.Since(lastOK) >= ttl/2:
			err = fmt.Errorf("%w: lease not renewed for %v: %w", storage.ErrLockLost, time.Since(lastOK).Round(time.Millisecond), err)
		case err != nil:
			l.s.log.Warn("postgres: cannot renew lock lease", slog.String("lock", l.name), slog.Any("error", err))
			continue
		default:
			lastOK = sent
			continue
		}
		l.s.log.Warn("postgres: lock lost", slog.String("lock", l.name), slog.Any("error", err))
		l.mu.Lock()
		l.lost = err
		l.mu.Unlock()
		l.cancel(err)
		return
	}
}

func (l *lease) renew(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(l.s.ctx, timeout)
	defer cancel()
	return l.s.with(ctx, idempotent, func(c *pgx.Conn) error {
		tag, err := c.Exec(ctx, l.s.n.expand(`UPDATE {locks} SET expires = now() + $4 * interval '1 millisecond'
			WHERE name = $1 AND owner = $2 AND token = $3`), l.name, l.owner, l.token, ms(l.s.cfg.LockTTL))
		if err == nil && tag.RowsAffected() == 0 {
			err = fmt.Errorf("%w: lease %q was taken over by another holder", storage.ErrLockLost, l.name)
		}
		return err
	})
}

// unlock stops the heartbeat and deletes the lease if it is still ours.
func (l *lease) unlock() error {
	l.mu.Lock()
	if l.released || l.abandoned {
		l.mu.Unlock()
		return nil
	}
	l.released = true
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	l.mu.Lock()
	err := l.lost
	l.mu.Unlock()
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = l.s.with(ctx, idempotent, func(c *pgx.Conn) error {
			tag, err := c.Exec(ctx, l.s.n.expand(`DELETE FROM {locks} WHERE name = $1 AND owner = $2 AND token = $3`),
				l.name, l.owner, l.token)
			if err == nil && tag.RowsAffected() == 0 {
				err = fmt.Errorf("%w: lease %q had expired and was taken over", storage.ErrLockLost, l.name)
			}
			return err
		})
		cancel()
	}
	l.cancel(errUnlocked)
	l.s.mu.Lock()
	delete(l.s.held, l)
	l.s.mu.Unlock()
	l.s.wake.Broadcast()
	return wrap("unlock", l.name, err)
}

// abandon stops the heartbeat without deleting the lease, as if the process
// had died. Used by tests.
func (l *lease) abandon() {
	l.mu.Lock()
	if l.released || l.abandoned {
		l.mu.Unlock()
		return
	}
	l.abandoned = true
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	l.s.mu.Lock()
	delete(l.s.held, l)
	l.s.mu.Unlock()
}

var errUnlocked = errors.New("postgres: unlocked")
