package postgres_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tlsmint/tlsmint/internal/testenv"
	"github.com/tlsmint/tlsmint/storage"
	"github.com/tlsmint/tlsmint/storage/postgres"
	"github.com/tlsmint/tlsmint/storage/storagetest"
)

// testDSN returns the DSN of the test server or skips the test.
func testDSN(t testing.TB) string {
	t.Helper()
	return testenv.Postgres(t)
}

// testPrefix returns a fresh table prefix whose tables are dropped when the
// test ends.
func testPrefix(t testing.TB, dsn string) string {
	t.Helper()
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	prefix := "t" + hex.EncodeToString(b) + "_"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := postgres.Drop(ctx, postgres.Config{DSN: dsn, TablePrefix: prefix}); err != nil {
			t.Errorf("clean-up: %v", err)
		}
	})
	return prefix
}

func open(t testing.TB, cfg postgres.Config) *postgres.Storage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := postgres.New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// fastLockTTL is short, so that the take-over of a dead holder's lease is
// quick, yet long enough that a live holder keeps its lease on a busy
// machine: it is lost only after LockTTL/2 (a second) without one
// successful renewal, each renewal having LockTTL/4 to answer.
const fastLockTTL = 2 * time.Second

func fastConfig(dsn, prefix string) postgres.Config {
	return postgres.Config{DSN: dsn, TablePrefix: prefix, LockTTL: fastLockTTL, LockPollInterval: 10 * time.Millisecond}
}

func TestConformance(t *testing.T) {
	dsn := testDSN(t)
	prefix := testPrefix(t, dsn)
	storagetest.Run(t, func(t *testing.T) storage.Storage { return open(t, fastConfig(dsn, prefix)) },
		storagetest.WithCrash(func(t *testing.T, s storage.Storage) { postgres.Crash(s.(*postgres.Storage)) }),
		storagetest.WithLockExpiry(fastLockTTL),
	)
}

func TestMigrationsConcurrentAndIdempotent(t *testing.T) {
	dsn := testDSN(t)
	prefix := testPrefix(t, dsn)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := postgres.New(t.Context(), postgres.Config{DSN: dsn, TablePrefix: prefix})
			if err != nil {
				errs <- err
				return
			}
			errs <- s.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("New on a fresh database, concurrently: %v", err)
		}
	}
	c, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var version, rows int
	if err := c.QueryRow(t.Context(), "SELECT max(version), count(*) FROM "+pgx.Identifier{prefix + "schema_version"}.Sanitize()).Scan(&version, &rows); err != nil {
		t.Fatal(err)
	}
	if version != 2 || rows != 1 {
		t.Errorf("schema version = %d in %d rows, want 2 in 1 row", version, rows)
	}
}

// A database at schema version 1 (before journals) is upgraded by New: its
// values stay, and the journal works.
func TestMigrationFromVersion1(t *testing.T) {
	dsn := testDSN(t)
	prefix := testPrefix(t, dsn)
	c, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(t.Context(), postgres.SchemaAt(prefix, 1)); err != nil {
		t.Fatalf("creating schema version 1: %v", err)
	}
	if _, err := c.Exec(t.Context(), "INSERT INTO "+pgx.Identifier{prefix + "values"}.Sanitize()+" (key, value) VALUES ('old/key', 'kept')"); err != nil {
		t.Fatal(err)
	}
	s := open(t, fastConfig(dsn, prefix))
	ctx := t.Context()
	if v, err := s.Load(ctx, "old/key"); err != nil || string(v) != "kept" {
		t.Fatalf("Load after the upgrade: %q, %v; want the old value", v, err)
	}
	e := storage.JournalEntry{Time: time.Now(), Node: "n1", Keys: []string{"example.com"}, Data: []byte(`{"a":1}`)}
	if err := s.Append(ctx, "audit", []storage.JournalEntry{e}); err != nil {
		t.Fatalf("Append after the upgrade: %v", err)
	}
	got, err := s.ReadJournal(ctx, "audit", storage.JournalQuery{Key: "example.com"})
	if err != nil || len(got) != 1 {
		t.Fatalf("ReadJournal after the upgrade: %d entries, %v; want 1", len(got), err)
	}
	var version int
	if err := c.QueryRow(ctx, "SELECT max(version) FROM "+pgx.Identifier{prefix + "schema_version"}.Sanitize()).Scan(&version); err != nil || version != 2 {
		t.Fatalf("schema version after the upgrade: %d, %v; want 2", version, err)
	}
}

// A schema written by a newer release is refused with ErrSchemaTooNew, and
// left as it is, also by a role that may not create tables and on a
// read-only connection (a hot standby), which used to fail trying to
// create the version table instead of saying why.
func TestSchemaTooNew(t *testing.T) {
	dsn := testDSN(t)
	prefix := testPrefix(t, dsn)
	open(t, fastConfig(dsn, prefix))
	c, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	version := pgx.Identifier{prefix + "schema_version"}.Sanitize()
	if _, err := c.Exec(t.Context(), "UPDATE "+version+" SET version = 9"); err != nil {
		t.Fatal(err)
	}
	for name, d := range map[string]string{"owner": dsn, "read-only": dsn + "&default_transaction_read_only=on"} {
		s, err := postgres.New(t.Context(), fastConfig(d, prefix))
		if err == nil {
			_ = s.Close()
		}
		if !errors.Is(err, postgres.ErrSchemaTooNew) || !strings.Contains(err.Error(), "version 9") {
			t.Errorf("%s: New on a schema at version 9 = %v, want ErrSchemaTooNew naming version 9", name, err)
		}
	}
	var v, rows int
	if err := c.QueryRow(t.Context(), "SELECT max(version), count(*) FROM "+version).Scan(&v, &rows); err != nil || v != 9 || rows != 1 {
		t.Errorf("schema version after the refusals: %d in %d rows (%v), want 9 in 1", v, rows, err)
	}
}

func TestConfigErrors(t *testing.T) {
	for name, cfg := range map[string]postgres.Config{
		"no DSN":     {},
		"bad prefix": {DSN: "postgres://localhost/x", TablePrefix: "Bad-Prefix"},
		"bad DSN":    {DSN: "postgres://[::1"},
	} {
		if s, err := postgres.New(t.Context(), cfg); err == nil {
			_ = s.Close()
			t.Errorf("%s: New succeeded", name)
		}
	}
}

// TestLeaseLost takes a holder's lease away behind its back, as a node does
// after the lease expired: the holder's lock context is cancelled, and its
// writes are fenced even through a context that is not cancelled.
func TestLeaseLost(t *testing.T) {
	dsn := testDSN(t)
	prefix := testPrefix(t, dsn)
	s := open(t, fastConfig(dsn, prefix))
	ctx := t.Context()
	lockCtx, unlock, err := s.LockContext(ctx, "renew/example.com")
	if err != nil {
		t.Fatal(err)
	}
	token, ok := postgres.FencingToken(lockCtx)
	if !ok || token <= 0 {
		t.Fatalf("FencingToken = %d, %v", token, ok)
	}
	if err := s.Store(lockCtx, "certs/example.com", []byte("v1 by holder")); err != nil {
		t.Fatalf("fenced Store while holding the lease: %v", err)
	}
	noCancel := context.WithoutCancel(lockCtx)

	// Another node takes the lease over.
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "UPDATE "+pgx.Identifier{prefix + "locks"}.Sanitize()+
		" SET owner = 'other node', token = nextval('"+prefix+"fence') WHERE name = 'renew/example.com'"); err != nil {
		t.Fatal(err)
	}
	if err := s.Store(ctx, "certs/example.com", []byte("v2 by new holder")); err != nil {
		t.Fatal(err)
	}
	// The old holder's write is refused at once, before its heartbeat
	// notices anything.
	if err := s.Store(noCancel, "certs/example.com", []byte("stale write")); !errors.Is(err, storage.ErrLockLost) {
		t.Errorf("Store by a holder that lost its lease = %v, want ErrLockLost", err)
	}
	if err := s.Delete(noCancel, "certs/example.com"); !errors.Is(err, storage.ErrLockLost) {
		t.Errorf("Delete by a holder that lost its lease = %v, want ErrLockLost", err)
	}
	if v, err := s.Load(ctx, "certs/example.com"); err != nil || string(v) != "v2 by new holder" {
		t.Errorf("Load = %q, %v; want the new holder's value", v, err)
	}
	select {
	case <-lockCtx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("lock context not cancelled after the lease was taken over")
	}
	if cause := context.Cause(lockCtx); !errors.Is(cause, storage.ErrLockLost) {
		t.Errorf("cause = %v, want ErrLockLost", cause)
	}
	if err := unlock(); !errors.Is(err, storage.ErrLockLost) {
		t.Errorf("unlock of a lost lease = %v, want ErrLockLost", err)
	}
}

// TestFrozenHolder: a holder whose heartbeat stops (a frozen process) loses
// the lease after LockTTL; its writes are then fenced.
func TestFrozenHolder(t *testing.T) {
	dsn := testDSN(t)
	prefix := testPrefix(t, dsn)
	frozen, other := open(t, fastConfig(dsn, prefix)), open(t, fastConfig(dsn, prefix))
	ctx := t.Context()
	lockCtx, _, err := frozen.LockContext(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	postgres.Crash(frozen)
	unlock, err := other.Lock(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if err := frozen.Store(context.WithoutCancel(lockCtx), "result", []byte("late")); !errors.Is(err, storage.ErrLockLost) {
		t.Errorf("Store by the frozen holder after takeover = %v, want ErrLockLost", err)
	}
	if _, err := other.Load(ctx, "result"); err == nil {
		t.Error("the frozen holder's write went through")
	}
}

func terminate(t *testing.T, dsn, app string) int {
	t.Helper()
	c, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(t.Context(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func withApp(dsn, app string) string {
	sep := "?"
	if bytes.ContainsRune([]byte(dsn), '?') {
		sep = "&"
	}
	return dsn + sep + "application_name=" + app
}

// TestDroppedConnection kills the backend's connections with
// pg_terminate_backend: the next call works (on a new connection), and no
// value is half-written by a call whose connection is killed under it.
func TestDroppedConnection(t *testing.T) {
	dsn := testDSN(t)
	prefix := testPrefix(t, dsn)
	app := "tlsmint-test-" + prefix
	cfg := fastConfig(withApp(dsn, app), prefix)
	s := open(t, cfg)
	ctx := t.Context()
	if err := s.Store(ctx, "k", []byte("before")); err != nil {
		t.Fatal(err)
	}
	// Fill the pool with several idle connections, all about to die.
	var warm sync.WaitGroup
	for range 4 {
		warm.Go(func() { _, _ = s.Load(ctx, "k") })
	}
	warm.Wait()
	if n := terminate(t, dsn, app); n == 0 {
		t.Fatal("no connection to terminate")
	}
	if v, err := s.Load(ctx, "k"); err != nil || string(v) != "before" {
		t.Fatalf("first call after the drop: Load = %q, %v", v, err)
	}

	// Now kill connections again and again while large values are written.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var failures, successes int
	var mu sync.Mutex
	for w := range 3 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				err := s.Store(ctx, fmt.Sprintf("big/%d", w), storagetest.Sealed(byte(w*31+i), 512<<10+i%1000))
				mu.Lock()
				if err != nil {
					failures++
				} else {
					successes++
				}
				mu.Unlock()
			}
		})
	}
	for range 5 {
		time.Sleep(50 * time.Millisecond)
		terminate(t, dsn, app)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d writes succeeded, %d failed on dropped connections", successes, failures)
	for w := range 3 {
		key := fmt.Sprintf("big/%d", w)
		v, err := s.Load(ctx, key)
		if err != nil {
			v, err = s.Load(ctx, key)
		}
		if err != nil {
			t.Errorf("Load(%q): %v", key, err)
			continue
		}
		if err := storagetest.CheckSealed(v); err != nil {
			t.Errorf("Load(%q): %v", key, err)
		}
	}
}

// TestHeartbeatSurvivesDroppedConnection: a lock holder whose connections
// are killed keeps its lease through the next renewal.
func TestHeartbeatSurvivesDroppedConnection(t *testing.T) {
	dsn := testDSN(t)
	prefix := testPrefix(t, dsn)
	app := "tlsmint-test-hb-" + prefix
	s := open(t, fastConfig(withApp(dsn, app), prefix))
	other := open(t, fastConfig(dsn, prefix))
	lockCtx, unlock, err := s.LockContext(t.Context(), "held")
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	expires := func() time.Time {
		t.Helper()
		var e time.Time
		if err := c.QueryRow(t.Context(), "SELECT expires FROM "+pgx.Identifier{prefix + "locks"}.Sanitize()+" WHERE name = 'held'").Scan(&e); err != nil {
			t.Fatalf("read the lease: %v", err)
		}
		return e
	}
	// Each time, wait for a renewal made after the drop (on a new
	// connection), rather than sleeping for what should be enough.
	for i := range 3 {
		terminate(t, dsn, app)
		before := expires()
		deadline := time.Now().Add(30 * time.Second)
		for !expires().After(before) {
			if time.Now().After(deadline) {
				t.Fatalf("drop %d: lease not renewed within 30s (lock context: %v)", i+1, context.Cause(lockCtx))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := context.Cause(lockCtx); err != nil {
		t.Fatalf("lock lost after dropped connections: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if u, err := other.Lock(ctx, "held"); err == nil {
		_ = u()
		t.Fatal("another client took a lock whose holder is alive")
	}
	if err := unlock(); err != nil {
		t.Error(err)
	}
}

func TestWatchAcrossNodesAndReconnect(t *testing.T) {
	dsn := testDSN(t)
	prefix := testPrefix(t, dsn)
	app := "tlsmint-test-watch-" + prefix
	watcher := open(t, fastConfig(withApp(dsn, app), prefix))
	writer := open(t, fastConfig(dsn, prefix))
	ctx := t.Context()
	events, err := watcher.Watch(ctx, "certificates/")
	if err != nil {
		t.Fatal(err)
	}
	if err := writer.Store(ctx, "certificates/a", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if ev := <-events; ev.Key != "certificates/a" || ev.Deleted {
		t.Errorf("event = %+v", ev)
	}
	// Kill the listener's connection: it reconnects and events flow again.
	terminate(t, dsn, app)
	deadline := time.After(20 * time.Second)
	for i := 0; ; i++ {
		if err := writer.Store(ctx, "certificates/b", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-events:
			if ev.Key == "certificates/b" {
				return
			}
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			t.Fatal("no event after the listener's connection was dropped")
		}
	}
}

// A role without the right to create tables starts on a schema that is
// already at this version, and stores, loads and locks.
func TestStartWithoutCreatePrivilege(t *testing.T) {
	dsn := testDSN(t)
	prefix := testPrefix(t, dsn)
	open(t, fastConfig(dsn, prefix)) // creates the schema as the owner
	ctx := t.Context()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	role := prefix + "dml"
	q := func(n string) string { return pgx.Identifier{prefix + n}.Sanitize() }
	r := pgx.Identifier{role}.Sanitize()
	for _, stmt := range []string{
		"CREATE ROLE " + r + " LOGIN",
		"REVOKE CREATE ON SCHEMA public FROM PUBLIC",
		"GRANT USAGE ON SCHEMA public TO " + r,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON " + q("values") + ", " + q("locks") + ", " + q("journal") + ", " + q("schema_version") + " TO " + r,
		"GRANT USAGE, UPDATE ON SEQUENCE " + q("fence") + ", " + pgx.Identifier{prefix + "journal_id_seq"}.Sanitize() + " TO " + r,
	} {
		if _, err := admin.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	t.Cleanup(func() {
		admin, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			return
		}
		defer admin.Close(context.Background())
		admin.Exec(context.Background(), "DROP OWNED BY "+r)
		admin.Exec(context.Background(), "DROP ROLE "+r)
	})
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	restricted := strings.Replace(dsn, "//"+cfg.User+"@", "//"+role+"@", 1)
	s := open(t, fastConfig(restricted, prefix))
	if err := s.Store(ctx, "a/b", []byte("v")); err != nil {
		t.Fatalf("Store as a role without CREATE: %v", err)
	}
	if v, err := s.Load(ctx, "a/b"); err != nil || string(v) != "v" {
		t.Fatalf("Load: %q %v", v, err)
	}
	unlock, err := s.Lock(ctx, "l")
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	unlock()
}

// Drop leaves no object of the prefix behind.
func TestDrop(t *testing.T) {
	dsn := testDSN(t)
	prefix := testPrefix(t, dsn)
	s := open(t, fastConfig(dsn, prefix))
	if err := s.Store(t.Context(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := postgres.Drop(t.Context(), postgres.Config{DSN: dsn, TablePrefix: prefix}); err != nil {
		t.Fatalf("Drop: %v", err)
	}
	c, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var left int
	if err := c.QueryRow(t.Context(), `SELECT count(*) FROM pg_class WHERE relname LIKE $1`, prefix+"%").Scan(&left); err != nil {
		t.Fatal(err)
	}
	var fns int
	if err := c.QueryRow(t.Context(), `SELECT count(*) FROM pg_proc WHERE proname LIKE $1`, prefix+"%").Scan(&fns); err != nil {
		t.Fatal(err)
	}
	if left != 0 || fns != 0 {
		t.Fatalf("after Drop: %d relations and %d functions of prefix %s left", left, fns, prefix)
	}
	if err := postgres.Drop(t.Context(), postgres.Config{DSN: dsn, TablePrefix: prefix}); err != nil {
		t.Fatalf("Drop again: %v", err)
	}
}
