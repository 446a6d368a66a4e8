package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// A Journal is an optional interface a [Storage] may implement to keep
// append-only logs natively — records added at the end, read by time range
// and key, trimmed by age — instead of as values under keys. Package audit
// keeps its trail in a Journal when the storage has one: a table in
// PostgreSQL, JSON-lines files rotated every hour in the file backend.
//
// A journal is named (see [CheckJournalName]) and shared by every client of
// the backing store; each entry says which node wrote it. Entries are never
// changed once appended, only trimmed by [Journal.TrimJournal].
type Journal interface {
	// Append adds entries at the end of the journal called name, all or
	// nothing where the backend can: after an error none of them is kept,
	// so that the caller may append the same entries again without
	// keeping any twice. A backend that cannot promise this for some
	// errors says which. Each entry's Data must be one JSON value, Node a
	// valid journal name, and Time set.
	Append(ctx context.Context, name string, entries []JournalEntry) error
	// ReadJournal returns the entries of the journal called name that
	// match q, oldest first.
	ReadJournal(ctx context.Context, name string, q JournalQuery) ([]JournalEntry, error)
	// TrimJournal deletes the entries of the journal called name older
	// than before. A backend may keep entries a little older (the file
	// backend deletes whole hours).
	TrimJournal(ctx context.Context, name string, before time.Time) error
}

// A JournalEntry is one record of a [Journal].
type JournalEntry struct {
	// Time is when the record was made, by the writer's clock.
	Time time.Time
	// Node names the process that wrote it.
	Node string
	// Keys index the entry for [JournalQuery.Key] (for the audit trail,
	// the names a record is about). At most MaxJournalKeys, each at most
	// MaxKeyLen bytes of valid UTF-8.
	Keys []string
	// Data is the record, one JSON value of at most MaxJournalData bytes.
	Data json.RawMessage
}

// A JournalQuery selects entries for [Journal.ReadJournal]. Zero fields
// match everything.
type JournalQuery struct {
	// Since and Until bound the entries' Time (Until exclusive).
	Since, Until time.Time
	// Key matches entries that have it among their Keys.
	Key string
	// Limit caps the entries returned, keeping the newest; zero means no
	// cap.
	Limit int
}

// Limits of journal entries, the same for every backend.
const (
	MaxJournalKeys = 16
	MaxJournalData = 64 << 10
)

// CheckJournalName reports whether name is a valid journal or node name:
// 1 to 100 bytes of a-z, A-Z, 0-9, '-', '_' and '.', not starting with a
// '.'. It returns an error wrapping [ErrInvalidKey] otherwise.
func CheckJournalName(name string) error {
	if name == "" || len(name) > 100 || name[0] == '.' {
		return fmt.Errorf("%w: journal name %q: 1 to 100 bytes, not starting with '.'", ErrInvalidKey, truncate(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%w: journal name %q: only letters, digits, '-', '_' and '.'", ErrInvalidKey, truncate(name))
		}
	}
	return nil
}

// CheckJournalEntries reports whether name and entries may be given to
// [Journal.Append], with the rules every backend applies: a valid journal
// name, and for each entry a valid Node, a Time in the years 1970 to 9999,
// at most MaxJournalKeys keys (each 1 to MaxKeyLen bytes of UTF-8 without
// control characters), and Data one JSON value of at most MaxJournalData
// bytes. The error wraps [ErrInvalidKey].
func CheckJournalEntries(name string, entries []JournalEntry) error {
	if err := CheckJournalName(name); err != nil {
		return err
	}
	for i, e := range entries {
		if err := CheckJournalName(e.Node); err != nil {
			return fmt.Errorf("entry %d: node: %w", i, err)
		}
		if y := e.Time.UTC().Year(); e.Time.IsZero() || y < 1970 || y > 9999 {
			return fmt.Errorf("%w: entry %d: time %v not set or outside the years 1970 to 9999", ErrInvalidKey, i, e.Time)
		}
		if len(e.Keys) > MaxJournalKeys {
			return fmt.Errorf("%w: entry %d: %d keys, at most %d", ErrInvalidKey, i, len(e.Keys), MaxJournalKeys)
		}
		for _, k := range e.Keys {
			if !ValidJournalKey(k) {
				return fmt.Errorf("%w: entry %d: key %q", ErrInvalidKey, i, truncate(k))
			}
		}
		if len(e.Data) > MaxJournalData || !json.Valid(e.Data) {
			return fmt.Errorf("%w: entry %d: data is not one JSON value of at most %d bytes", ErrInvalidKey, i, MaxJournalData)
		}
	}
	return nil
}

// ValidJournalKey reports whether k may index a journal entry
// ([JournalEntry.Keys]): 1 to MaxKeyLen bytes of UTF-8 without control
// characters.
func ValidJournalKey(k string) bool {
	return k != "" && len(k) <= MaxKeyLen && utf8.ValidString(k) && !strings.ContainsFunc(k, unicode.IsControl)
}

// matches reports whether e matches q's time range and key.
func (q JournalQuery) matches(e JournalEntry) bool {
	if !q.Since.IsZero() && e.Time.Before(q.Since) {
		return false
	}
	if !q.Until.IsZero() && !e.Time.Before(q.Until) {
		return false
	}
	if q.Key != "" {
		for _, k := range e.Keys {
			if k == q.Key {
				return true
			}
		}
		return false
	}
	return true
}
