package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tlsmint/tlsmint/storage"
)

// The calls run on a pgxpool.Pool, configured from the DSN's pool_*
// parameters. Before it hands out a connection that was idle for more
// than a second, the pool pings it and replaces it if it is broken. A
// connection that breaks under a call (pg_terminate_backend, a restarted
// server, a failover), which a connection idle for less than a second can,
// makes the pool drop all its idle connections, which most likely broke
// the same way, and the call runs once more on a fresh connection when
// running it twice is harmless (every call but Append, whose COPY is run
// again only if it cannot have reached the server).

// retryable says whether a call may run twice.
type retryable bool

const (
	idempotent retryable = true  // running it twice is as running it once
	once       retryable = false // run again only if it never reached the server
)

// with runs f on a pooled connection; see the comment above.
func (s *Storage) with(ctx context.Context, retry retryable, f func(c *pgx.Conn) error) error {
	for attempt := 0; ; attempt++ {
		pc, err := s.pool.Acquire(ctx)
		if err != nil {
			if s.isClosed() {
				return storage.ErrClosed
			}
			return err
		}
		c := pc.Conn()
		err = f(c)
		// A call cancelled under way closes its connection too; that one
		// says nothing about the others.
		broken := err != nil && c.IsClosed() && ctx.Err() == nil
		pc.Release() // destroys a closed connection
		if !broken {
			return err
		}
		s.broken.Add(1)
		s.pool.Reset()
		if attempt > 0 || (retry == once && !pgconn.SafeToRetry(err)) {
			return err
		}
		s.log.Debug("postgres: connection broken; running the call again on a new one", "error", err)
	}
}

func (s *Storage) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// newPool parses cfg.DSN, with its pool parameters, into a pool that
// connects lazily.
func newPool(cfg Config) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, err
	}
	if pcfg.ConnConfig.RuntimeParams["application_name"] == "" {
		pcfg.ConnConfig.RuntimeParams["application_name"] = "tlsmint"
	}
	return pgxpool.NewWithConfig(context.Background(), pcfg)
}

// PoolStats implements [storage.PoolReporter]: the statistics of the pool
// the calls use (not the listener's connection).
func (s *Storage) PoolStats() storage.PoolStats {
	st := s.pool.Stat()
	return storage.PoolStats{
		MaxConns:          int(st.MaxConns()),
		TotalConns:        int(st.TotalConns()),
		IdleConns:         int(st.IdleConns()),
		AcquiredConns:     int(st.AcquiredConns()),
		ConstructingConns: int(st.ConstructingConns()),
		Acquires:          st.AcquireCount(),
		EmptyAcquires:     st.EmptyAcquireCount(),
		CanceledAcquires:  st.CanceledAcquireCount(),
		AcquireWait:       st.AcquireDuration(),
		NewConns:          st.NewConnsCount(),
		LifetimeCloses:    st.MaxLifetimeDestroyCount(),
		IdleCloses:        st.MaxIdleDestroyCount(),
		BrokenConns:       s.broken.Load(),
	}
}

var _ storage.PoolReporter = (*Storage)(nil)

// closeConn closes a connection of its own (the listener's).
func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.Close(ctx)
}
