package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tlsmint/tlsmint/storage"
)

// The journals (storage.Journal) live in one table, <prefix>journal: a row
// per entry with the journal's name, time, node, keys (text[], with a GIN
// index) and data (json, kept as written), indexed by journal and time.
// Times are kept to the microsecond.

var _ storage.Journal = (*Storage)(nil)

// Append implements [storage.Journal.Append] with one COPY: the entries
// are kept all or none.
func (s *Storage) Append(ctx context.Context, name string, entries []storage.JournalEntry) error {
	if err := s.begin(ctx, "journal append", name); err != nil {
		return err
	}
	if err := storage.CheckJournalEntries(name, entries); err != nil {
		return fmt.Errorf("postgres: journal append: %w", err)
	}
	if len(entries) == 0 {
		return nil
	}
	rows := make([][]any, len(entries))
	for i, e := range entries {
		keys := e.Keys
		if keys == nil {
			keys = []string{}
		}
		rows[i] = []any{name, e.Time, e.Node, keys, string(e.Data)}
	}
	err := s.with(ctx, once, func(c *pgx.Conn) error {
		_, err := c.CopyFrom(ctx, pgx.Identifier{s.n.prefix + "journal"}, []string{"journal", "time", "node", "keys", "data"}, pgx.CopyFromRows(rows))
		return err
	})
	return wrap("journal append", name, err)
}

// ReadJournal implements [storage.Journal.ReadJournal] with one indexed
// query.
func (s *Storage) ReadJournal(ctx context.Context, name string, q storage.JournalQuery) ([]storage.JournalEntry, error) {
	if err := s.begin(ctx, "journal read", name); err != nil {
		return nil, err
	}
	if err := storage.CheckJournalName(name); err != nil {
		return nil, fmt.Errorf("postgres: journal read: %w", err)
	}
	var since, until *time.Time
	if !q.Since.IsZero() {
		since = &q.Since
	}
	if !q.Until.IsZero() {
		until = &q.Until
	}
	var limit *int
	if q.Limit > 0 {
		limit = &q.Limit
	}
	var out []storage.JournalEntry
	err := s.with(ctx, idempotent, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, s.n.expand(`SELECT time, node, keys, data::text FROM {journal}
			WHERE journal = $1
			  AND ($2::timestamptz IS NULL OR time >= $2)
			  AND ($3::timestamptz IS NULL OR time < $3)
			  AND ($4 = '' OR keys @> ARRAY[$4]::text[])
			ORDER BY time DESC, id DESC
			LIMIT $5`), name, since, until, q.Key, limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.JournalEntry, error) {
			var e storage.JournalEntry
			var data string
			err := r.Scan(&e.Time, &e.Node, &e.Keys, &data)
			e.Data = json.RawMessage(data)
			if len(e.Keys) == 0 {
				e.Keys = nil
			}
			return e, err
		})
		return err
	})
	if err != nil {
		return nil, wrap("journal read", name, err)
	}
	slices.Reverse(out)
	return out, nil
}

// TrimJournal implements [storage.Journal.TrimJournal].
func (s *Storage) TrimJournal(ctx context.Context, name string, before time.Time) error {
	if err := s.begin(ctx, "journal trim", name); err != nil {
		return err
	}
	if err := storage.CheckJournalName(name); err != nil {
		return fmt.Errorf("postgres: journal trim: %w", err)
	}
	err := s.with(ctx, idempotent, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, s.n.expand(`DELETE FROM {journal} WHERE journal = $1 AND time < $2`), name, before)
		return err
	})
	return wrap("journal trim", name, err)
}
