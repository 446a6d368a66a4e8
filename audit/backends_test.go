package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tlsmint/tlsmint/internal/testenv"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/storage"
	"github.com/tlsmint/tlsmint/storage/postgres"
)

// backends returns the storages the trail is tested on: in memory (batches
// stored as values), files and PostgreSQL (journals: rotated JSON-lines
// files, a table). PostgreSQL needs TLSMINT_TEST_POSTGRES; without it that
// case is skipped through testenv.Postgres (fails with CI=true). Each call of a backend's function opens another client of
// the same backing store.
func backends(t *testing.T) map[string]func() storage.Storage {
	mem := storage.NewMemory()
	dir := t.TempDir()
	out := map[string]func() storage.Storage{
		"memory": func() storage.Storage { return mem },
		"files": func() storage.Storage {
			s := storage.Dir(dir)
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
	out["postgres"] = nil // skipped without a database
	if dsn := os.Getenv(testenv.PostgresEnv); dsn != "" {
		b := make([]byte, 5)
		_, _ = rand.Read(b)
		prefix := "audit" + hex.EncodeToString(b) + "_"
		t.Cleanup(func() { dropTables(t, dsn, prefix) })
		out["postgres"] = func() storage.Storage {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := postgres.New(ctx, postgres.Config{DSN: dsn, TablePrefix: prefix})
			if err != nil {
				t.Fatalf("postgres.New: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
	}
	return out
}

func dropTables(t *testing.T, dsn, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := postgres.Drop(ctx, postgres.Config{DSN: dsn, TablePrefix: prefix}); err != nil {
		t.Errorf("clean-up: %v", err)
	}
}

// forBackends runs f on every backend, as subtests.
func forBackends(t *testing.T, f func(t *testing.T, open func() storage.Storage)) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			if open == nil {
				testenv.Postgres(t)
			}
			f(t, open)
		})
	}
}

// failing makes a storage's writes fail while fail is set: Store for
// batches stored as values, Append for journals.
type failing struct {
	storage.Storage
	fail func() bool
}

var errDiskFull = errors.New("disk full")

func (f *failing) Store(ctx context.Context, key string, v []byte) error {
	if f.fail() {
		return errDiskFull
	}
	return f.Storage.Store(ctx, key, v)
}

// failingJournal is failing for a storage with a journal.
type failingJournal struct {
	*failing
	j storage.Journal
}

func (f *failingJournal) Append(ctx context.Context, name string, e []storage.JournalEntry) error {
	if f.fail() {
		return errDiskFull
	}
	return f.j.Append(ctx, name, e)
}

func (f *failingJournal) ReadJournal(ctx context.Context, name string, q storage.JournalQuery) ([]storage.JournalEntry, error) {
	return f.j.ReadJournal(ctx, name, q)
}

func (f *failingJournal) TrimJournal(ctx context.Context, name string, before time.Time) error {
	return f.j.TrimJournal(ctx, name, before)
}

// withFailures wraps s so that its writes fail while fail returns true,
// keeping its journal if it has one.
func withFailures(s storage.Storage, fail func() bool) storage.Storage {
	f := &failing{Storage: s, fail: fail}
	if j, ok := s.(storage.Journal); ok {
		return &failingJournal{failing: f, j: j}
	}
	return f
}

// The file backend keeps the trail in JSON-lines files rotated by the hour
// (0600, one record per line), not as values under keys.
func TestFileJournalLayout(t *testing.T) {
	dir := t.TempDir()
	store := storage.Dir(dir)
	defer store.Close()
	at := time.Date(2026, 12, 1, 10, 30, 0, 0, time.UTC)
	l := &Log{Storage: store, Node: "web-1"}
	defer l.Close()
	l.Add(record.Audit{Time: at, Kind: record.KindDecision, Outcome: record.OutcomeOK, Operation: "obtained", Names: []string{"a.example"}})
	l.Add(record.Audit{Time: at.Add(time.Hour), Kind: record.KindDecision, Outcome: record.OutcomeOK, Operation: "renewed", Names: []string{"a.example"}})
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, hour := range []string{"2026120110", "2026120111"} {
		p := filepath.Join(dir, ".journal", "audit", "web-1", hour+".jsonl")
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("hour file: %v", err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, fi.Mode().Perm())
		}
		b, _ := os.ReadFile(p)
		var line struct {
			Node string       `json:"node"`
			Data record.Audit `json:"data"`
		}
		if err := json.Unmarshal(bytes.TrimSpace(b), &line); err != nil || line.Node != "web-1" || line.Data.Names[0] != "a.example" {
			t.Errorf("%s: %q (%v), want one JSON line with the record", p, b, err)
		}
	}
	if keys, _ := store.List(context.Background(), "audit/"); len(keys) != 0 {
		t.Errorf("batches stored as values too: %v", keys)
	}
}

// A journal file damaged by a crash or by hand still yields every whole
// record: a last line torn by a crash (no newline) costs only itself, not
// the record appended after it; a line that is not JSON and a line longer
// than any record (a megabyte without a newline) are skipped, and the
// records after them read.
func TestFileJournalDamaged(t *testing.T) {
	dir := t.TempDir()
	store := storage.Dir(dir)
	defer store.Close()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	l := &Log{Storage: store, Node: "web-1"}
	defer l.Close()
	add := func(i int) {
		t.Helper()
		l.Add(record.Audit{Time: at.Add(time.Duration(i) * time.Minute), Kind: record.KindDecision, Outcome: record.OutcomeOK, Operation: "obtained", Names: []string{fmt.Sprintf("n%d.example", i)}})
		if err := l.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, ".journal", "audit", "web-1", "2026120110.jsonl")
	damage := func(b []byte) {
		t.Helper()
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	add(0)
	damage([]byte(`{"time":"2026-12-01T10:00:30Z","node":"web-1","data":{"ti`)) // torn by a crash
	add(1)
	damage([]byte("not json at all\n"))
	add(2)
	damage(append(bytes.Repeat([]byte("x"), 1<<20), '\n'))
	add(3)
	recs, err := l.Query(context.Background(), record.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.Names...)
	}
	if want := []string{"n0.example", "n1.example", "n2.example", "n3.example"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("records read from the damaged file: %v, want %v", got, want)
	}
}

// A batch stored as a value with a line that is not a record (of any
// length) still yields the records around it.
func TestBatchValueDamaged(t *testing.T) {
	store := storage.NewMemory()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	line := func(name string) []byte {
		b, _ := json.Marshal(record.Audit{Time: at, Node: "web-1", Kind: record.KindDecision, Outcome: record.OutcomeOK, Operation: "obtained", Names: []string{name}})
		return append(b, '\n')
	}
	var batch []byte
	batch = append(batch, line("a.example")...)
	batch = append(batch, bytes.Repeat([]byte("x"), 2<<20)...)
	batch = append(batch, '\n')
	batch = append(batch, line("b.example")...)
	key := fmt.Sprintf("audit/web-1/%020d-000001.jsonl", at.UnixNano())
	if err := store.Store(context.Background(), key, batch); err != nil {
		t.Fatal(err)
	}
	l := &Log{Storage: store, Node: "reader", Retention: -1}
	defer l.Close()
	recs, err := l.Query(context.Background(), record.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Names[0] != "a.example" || recs[1].Names[0] != "b.example" {
		t.Errorf("records read: %+v, want a.example and b.example", recs)
	}
}

// A record no journal can hold (a time before 1970, a target too long
// even once names and detail are clipped) is dropped and logged, and the
// records flushed with it are written: before, it failed every flush of
// its batch, for ever, and the trail of every later record with it.
func TestUnrecordableRecordDropped(t *testing.T) {
	forBackends(t, func(t *testing.T, open func() storage.Storage) {
		if _, ok := open().(storage.Journal); !ok {
			t.Skip("batches stored as values hold any record")
		}
		var logged bytes.Buffer
		l := &Log{Storage: open(), Node: "web-1", Logger: slog.New(slog.NewTextHandler(&logged, nil))}
		defer l.Close()
		l.Add(record.Audit{Time: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), Kind: record.KindDecision, Outcome: record.OutcomeOK, Operation: "obtained"})
		l.Add(record.Audit{Kind: record.KindProbe, Outcome: record.OutcomeFailure, Operation: "probe", Target: strings.Repeat("t", storage.MaxJournalData)})
		l.Add(record.Audit{Kind: record.KindDecision, Outcome: record.OutcomeOK, Operation: "obtained", Names: []string{"good.example"}})
		if err := l.Flush(context.Background()); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		reader := &Log{Storage: open(), Node: "reader", Retention: -1}
		defer reader.Close()
		recs, err := reader.Query(context.Background(), record.AuditFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 || recs[0].Names[0] != "good.example" {
			t.Errorf("stored records: %+v, want the one of good.example", recs)
		}
		if !strings.Contains(logged.String(), "dropped=2") {
			t.Errorf("log: %q, want the two records dropped", logged.String())
		}
	})
}

// PostgreSQL keeps the trail in its journal table, a row per record.
func TestPostgresJournalTable(t *testing.T) {
	dsn := testenv.Postgres(t)
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	prefix := "audit" + hex.EncodeToString(b) + "_"
	t.Cleanup(func() { dropTables(t, dsn, prefix) })
	ctx := context.Background()
	s, err := postgres.New(ctx, postgres.Config{DSN: dsn, TablePrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l := &Log{Storage: s, Node: "db-node"}
	defer l.Close()
	for i := range 3 {
		l.Add(record.Audit{Kind: record.KindExchange, Outcome: record.OutcomeOK, Operation: "newOrder", Names: []string{fmt.Sprintf("n%d.example", i)}})
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var rows int
	var op string
	if err := c.QueryRow(ctx, "SELECT count(*), min(data->>'operation') FROM "+pgx.Identifier{prefix + "journal"}.Sanitize()+" WHERE journal = 'audit' AND node = 'db-node' AND keys @> ARRAY['n1.example']").Scan(&rows, &op); err != nil {
		t.Fatal(err)
	}
	if rows != 1 || op != "newOrder" {
		t.Fatalf("journal rows for n1.example: %d (%q), want 1 newOrder", rows, op)
	}
}

// ambiguous stores a value and then reports an error, once each time fail
// is set: a Store whose answer was lost, or whose folder sync failed after
// the rename. It hides any journal, so batches are stored as values.
type ambiguous struct {
	storage.Storage
	fail atomic.Bool
}

func (a *ambiguous) Store(ctx context.Context, key string, v []byte) error {
	if err := a.Storage.Store(ctx, key, v); err != nil {
		return err
	}
	if a.fail.Swap(false) {
		return errDiskFull
	}
	return nil
}

// A batch whose Store failed after storing it is stored again under the
// same key by the next flush, with the records added since: each record is
// kept once. Before, the retry used a new key and the batch was kept twice.
func TestBatchRetryNotDuplicated(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) storage.Storage{
		"memory": func(*testing.T) storage.Storage { return storage.NewMemory() },
		"files": func(t *testing.T) storage.Storage {
			s := storage.Dir(t.TempDir())
			t.Cleanup(func() { s.Close() })
			return s
		},
	} {
		t.Run(name, func(t *testing.T) {
			store := &ambiguous{Storage: open(t)}
			at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
			l := &Log{Storage: store, Node: "web-1", Retention: -1}
			defer l.Close()
			add := func(i int) {
				l.Add(record.Audit{Time: at.Add(time.Duration(i) * time.Second), Kind: record.KindDecision, Outcome: record.OutcomeOK, Operation: "obtained", Names: []string{fmt.Sprintf("n%d.example", i)}})
			}
			add(0)
			add(1)
			store.fail.Store(true)
			if err := l.Flush(ctxT(t)); err == nil {
				t.Fatal("Flush succeeded though its Store failed")
			}
			add(2)
			if err := l.Flush(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			add(3)
			if err := l.Flush(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			reader := &Log{Storage: store, Node: "reader", Retention: -1}
			defer reader.Close()
			recs, err := reader.Query(ctxT(t), record.AuditFilter{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range recs {
				got = append(got, r.Names...)
			}
			if want := []string{"n0.example", "n1.example", "n2.example", "n3.example"}; !slices.Equal(got, want) {
				t.Errorf("stored records: %v, want %v each once", got, want)
			}
		})
	}
}
