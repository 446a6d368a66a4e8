package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tlsmint/tlsmint/internal/tcpproxy"

	"github.com/tlsmint/tlsmint/storage/postgres"
)

// withParam adds a parameter to a DSN in the URL or the key=value form.
func withParam(dsn, param string) string {
	switch {
	case !strings.Contains(dsn, "://"):
		return dsn + " " + param
	case strings.Contains(dsn, "?"):
		return dsn + "&" + param
	}
	return dsn + "?" + param
}

// warm makes n calls at once, so that the pool holds up to n idle
// connections.
func warm(t *testing.T, s *postgres.Storage, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if _, err := s.List(t.Context(), ""); err != nil {
				t.Errorf("warming the pool: %v", err)
			}
		})
	}
	wg.Wait()
}

// TestCallAfterTerminatedConnections kills every server-side connection
// of the store (pg_terminate_backend) between two calls, with the pool
// full of idle connections that were used a moment ago (so that no health
// check pings them): the next Load, Store and Lock each succeed.
func TestCallAfterTerminatedConnections(t *testing.T) {
	dsn := testDSN(t)
	prefix := testPrefix(t, dsn)
	app := "tlsmint-test-term-" + prefix
	s := open(t, fastConfig(withParam(withApp(dsn, app), "pool_max_conns=4"), prefix))
	ctx := t.Context()
	if err := s.Store(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		name string
		call func() error
	}{
		{"Load", func() error {
			v, err := s.Load(ctx, "k")
			if err == nil && string(v) != "v" {
				err = fmt.Errorf("got %q, want %q", v, "v")
			}
			return err
		}},
		{"Store", func() error { return s.Store(ctx, "k", []byte("v")) }},
		{"Lock", func() error {
			unlock, err := s.Lock(ctx, "l")
			if err != nil {
				return err
			}
			return unlock()
		}},
		{"Stat", func() error { _, err := s.Stat(ctx, "k"); return err }},
		{"List", func() error { _, err := s.List(ctx, ""); return err }},
		{"Delete", func() error { return s.Delete(ctx, "gone") }},
	} {
		// Concurrent calls open several connections, unless a loaded
		// machine runs them one after the other: warm until it did.
		for range 50 {
			if warm(t, s, 4); s.PoolStats().IdleConns >= 2 {
				break
			}
		}
		before := s.PoolStats()
		if before.IdleConns < 2 {
			t.Fatalf("%s: %d idle connections before the kill, want several", step.name, before.IdleConns)
		}
		if n := terminate(t, dsn, app); n < before.IdleConns {
			t.Fatalf("%s: terminated %d connections, want %d", step.name, n, before.IdleConns)
		}
		if err := step.call(); err != nil {
			t.Errorf("%s after every connection was terminated: %v", step.name, err)
		}
		if after := s.PoolStats(); after.BrokenConns <= before.BrokenConns {
			t.Errorf("%s: BrokenConns %d → %d, want it counted", step.name, before.BrokenConns, after.BrokenConns)
		}
	}
}

// TestHealthCheckBeforeUse: a connection idle for more than a second is
// pinged before use, so a connection terminated while idle is replaced
// before a call runs on it (the call never sees it broken).
func TestHealthCheckBeforeUse(t *testing.T) {
	dsn := testDSN(t)
	prefix := testPrefix(t, dsn)
	app := "tlsmint-test-ping-" + prefix
	s := open(t, fastConfig(withParam(withApp(dsn, app), "pool_max_conns=2"), prefix))
	ctx := t.Context()
	if err := s.Store(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if n := terminate(t, dsn, app); n != 1 {
		t.Fatalf("terminated %d connections, want 1", n)
	}
	time.Sleep(1100 * time.Millisecond) // the pool pings connections idle for more than 1s
	if _, err := s.Load(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	st := s.PoolStats()
	if st.BrokenConns != 0 {
		t.Errorf("BrokenConns = %d, want 0: the call ran on the terminated connection", st.BrokenConns)
	}
	if st.NewConns != 2 {
		t.Errorf("NewConns = %d, want 2 (the first and its replacement)", st.NewConns)
	}
}

// TestPoolParametersFromDSN: the DSN's pool parameters size and age the
// pool.
func TestPoolParametersFromDSN(t *testing.T) {
	dsn := testDSN(t)
	prefix := testPrefix(t, dsn)
	ctx := t.Context()

	s := open(t, fastConfig(withParam(dsn, "pool_max_conns=2&pool_max_conn_idle_time=100ms&pool_health_check_period=50ms"), prefix))
	if got := s.PoolStats().MaxConns; got != 2 {
		t.Errorf("MaxConns = %d, want 2 (pool_max_conns)", got)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := s.Stat(ctx, "missing"); !errors.Is(err, errNotExist) {
				t.Errorf("Stat: %v", err)
			}
		})
	}
	wg.Wait()
	if st := s.PoolStats(); st.NewConns > 2 || st.TotalConns > 2 {
		t.Errorf("8 calls at once opened %d connections (%d open), want at most 2", st.NewConns, st.TotalConns)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.PoolStats().IdleCloses == 0 || s.PoolStats().TotalConns != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("idle connections not closed after pool_max_conn_idle_time: %+v", s.PoolStats())
		}
		time.Sleep(20 * time.Millisecond)
	}

	short := open(t, fastConfig(withParam(dsn, "pool_max_conn_lifetime=1ms"), prefix))
	for range 3 {
		if _, err := short.List(ctx, ""); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st := short.PoolStats(); st.LifetimeCloses == 0 {
		t.Errorf("no connection closed after pool_max_conn_lifetime: %+v", st)
	}

	if _, err := postgres.New(ctx, postgres.Config{DSN: withParam(dsn, "pool_max_conns=0"), TablePrefix: prefix}); err == nil {
		t.Error("New accepted pool_max_conns=0")
	}
	if err := postgres.Drop(ctx, postgres.Config{DSN: withParam(dsn, "pool_max_conns=2"), TablePrefix: "tnothing_"}); err != nil {
		t.Errorf("Drop with pool parameters in the DSN: %v", err)
	}
}

// TestFailover cuts every connection of a store, its listener's included,
// and keeps the server unreachable for a while, as a failover does: once
// the server is back, Load, Store and Lock succeed at the first try and
// Watch reports changes again.
func TestFailover(t *testing.T) {
	dsn := testDSN(t)
	prefix := testPrefix(t, dsn)
	pdsn, proxy := tcpproxy.StartPostgres(t, dsn)
	s := open(t, fastConfig(pdsn, prefix))
	writer := open(t, fastConfig(dsn, prefix))
	ctx := t.Context()
	events, err := s.Watch(ctx, "w/")
	if err != nil {
		t.Fatal(err)
	}
	warm(t, s, 4)

	proxy.Down()
	time.Sleep(300 * time.Millisecond) // the listener notices and retries meanwhile
	proxy.Up()

	if err := s.Store(ctx, "k", []byte("after")); err != nil {
		t.Errorf("Store after the failover: %v", err)
	}
	if v, err := s.Load(ctx, "k"); err != nil || string(v) != "after" {
		t.Errorf("Load after the failover = %q, %v", v, err)
	}
	if unlock, err := s.Lock(ctx, "l"); err != nil {
		t.Errorf("Lock after the failover: %v", err)
	} else if err := unlock(); err != nil {
		t.Errorf("unlock: %v", err)
	}
	deadline := time.After(20 * time.Second)
	for i := 0; ; i++ {
		if err := writer.Store(ctx, "w/k", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-events:
			if ev.Key != "w/k" {
				t.Fatalf("event %+v", ev)
			}
			return
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatal("Watch reported nothing after the failover")
		}
	}
}

var errNotExist = fs.ErrNotExist

// TestCancelledCallKeepsThePool: a call whose context ends while it waits
// on the server (here for a table lock another session holds) closes its
// own connection only: it is not counted as broken and the idle
// connections stay.
func TestCancelledCallKeepsThePool(t *testing.T) {
	dsn := testDSN(t)
	prefix := testPrefix(t, dsn)
	s := open(t, fastConfig(withParam(dsn, "pool_max_conns=4"), prefix))
	ctx := t.Context()
	if err := s.Store(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	warm(t, s, 4)
	idle := s.PoolStats().IdleConns
	locker, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close(context.Background())
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{prefix + "values"}.Sanitize()+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := s.Load(short, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Load behind a table lock: %v, want the deadline", err)
	}
	st := s.PoolStats()
	if st.BrokenConns != 0 {
		t.Errorf("BrokenConns = %d after a cancelled call, want 0", st.BrokenConns)
	}
	if st.IdleConns < idle-1 {
		t.Errorf("%d idle connections after a cancelled call, want at least %d: the pool was reset", st.IdleConns, idle-1)
	}
}
