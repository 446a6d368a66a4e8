package postgres

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tlsmint/tlsmint/storage"
)

// pool is a small pool of connections. A connection that fails with
// anything other than an error reported by the server is closed, and so are
// the idle ones, which have most likely failed the same way (a restarted
// server, pg_terminate_backend): the next call then starts afresh.
type pool struct {
	cfg *pgx.ConnConfig
	sem chan struct{}

	mu     sync.Mutex
	idle   []*pgx.Conn
	closed bool
}

func newPool(cfg *pgx.ConnConfig, size int) *pool {
	return &pool{cfg: cfg, sem: make(chan struct{}, size)}
}

func (p *pool) get(ctx context.Context) (*pgx.Conn, error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.sem
		return nil, storage.ErrClosed
	}
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	c, err := pgx.ConnectConfig(ctx, p.cfg)
	if err != nil {
		<-p.sem
		return nil, err
	}
	return c, nil
}

// put returns c after a call that ended with err.
func (p *pool) put(c *pgx.Conn, err error) {
	defer func() { <-p.sem }()
	healthy := !c.IsClosed() && (err == nil || errors.Is(err, pgx.ErrNoRows) || isStatementError(err))
	if healthy {
		p.mu.Lock()
		if !p.closed {
			p.idle = append(p.idle, c)
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
	var stale []*pgx.Conn
	if !healthy && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		p.mu.Lock()
		stale, p.idle = p.idle, nil
		p.mu.Unlock()
	}
	closeConns(append(stale, c))
}

// isStatementError reports whether err is an error the server reported about
// a statement, leaving the connection usable; FATAL errors, "operator
// intervention" (such as pg_terminate_backend) and connection exceptions are
// not.
func isStatementError(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch {
	case pgErr.Severity == "FATAL" || pgErr.Severity == "PANIC":
		return false
	case strings.HasPrefix(pgErr.Code, "57") || strings.HasPrefix(pgErr.Code, "08"):
		return false
	}
	return true
}

func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	closeConns(idle)
}

func closeConns(conns []*pgx.Conn) {
	for _, c := range conns {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = c.Close(ctx)
		cancel()
	}
}
