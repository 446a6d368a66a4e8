package storagetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/storage"
)

// testJournal checks a backend's [storage.Journal]: appends by two
// clients and nodes over several hours, read back in time order by time
// range, key and limit, with the data intact; invalid entries refused
// whole; trimming by age. It is skipped for backends without one.
func (s *suite) testJournal(t *testing.T) {
	a, ok := s.newStorage(t).(storage.Journal)
	if !ok {
		t.Skip("the backend does not implement storage.Journal")
	}
	b := s.newStorage(t).(storage.Journal)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := strings.ReplaceAll(s.ns, "storagetest-", "j-")
	defer a.TrimJournal(context.WithoutCancel(ctx), name, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC))

	base := time.Date(2026, 12, 1, 9, 59, 0, 0, time.UTC)
	entry := func(i int, node string, keys ...string) storage.JournalEntry {
		return storage.JournalEntry{
			Time: base.Add(time.Duration(i) * 20 * time.Minute), Node: node, Keys: keys,
			Data: json.RawMessage(fmt.Sprintf(`{"i":%d,"text":"caf\u00e9 \\u0000 \"q\""}`, i)),
		}
	}
	// Node a: entries 0, 2, 4 (9:59, 10:39, 11:19); node b: 1, 3, 5.
	if err := a.Append(ctx, name, []storage.JournalEntry{entry(0, "node-a", "x.example"), entry(2, "node-a", "y.example", "x.example")}); err != nil {
		t.Fatalf("Append: %v", err)
	}
	if err := b.Append(ctx, name, []storage.JournalEntry{entry(1, "node-b", "y.example"), entry(3, "node-b")}); err != nil {
		t.Fatalf("Append (another client): %v", err)
	}
	if err := a.Append(ctx, name, []storage.JournalEntry{entry(4, "node-a", "x.example")}); err != nil {
		t.Fatalf("Append: %v", err)
	}
	if err := b.Append(ctx, name, []storage.JournalEntry{entry(5, "node-b", "z.example")}); err != nil {
		t.Fatalf("Append: %v", err)
	}
	if err := a.Append(ctx, name, nil); err != nil {
		t.Fatalf("Append of nothing: %v", err)
	}
	read := func(j storage.Journal, q storage.JournalQuery) []int {
		t.Helper()
		got, err := j.ReadJournal(ctx, name, q)
		if err != nil {
			t.Fatalf("ReadJournal(%+v): %v", q, err)
		}
		var is []int
		for _, e := range got {
			var d struct {
				I    int    `json:"i"`
				Text string `json:"text"`
			}
			if err := json.Unmarshal(e.Data, &d); err != nil {
				t.Fatalf("entry data %q: %v", e.Data, err)
			}
			want := entry(d.I, e.Node, e.Keys...)
			if !e.Time.Equal(want.Time) || d.Text != "café \\u0000 \"q\"" || e.Node != []string{"node-a", "node-b"}[d.I%2] {
				t.Errorf("entry %d: time %v node %s text %q, want %v %s and the text intact", d.I, e.Time, e.Node, d.Text, want.Time, []string{"node-a", "node-b"}[d.I%2])
			}
			is = append(is, d.I)
		}
		return is
	}
	check := func(q storage.JournalQuery, want ...int) {
		t.Helper()
		for i, j := range []storage.Journal{a, b} {
			if got := read(j, q); !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
				t.Errorf("client %d: ReadJournal(%+v) = %v, want %v", i, q, got, want)
			}
		}
	}
	check(storage.JournalQuery{}, 0, 1, 2, 3, 4, 5)
	check(storage.JournalQuery{Key: "x.example"}, 0, 2, 4)
	check(storage.JournalQuery{Key: "y.example"}, 1, 2)
	check(storage.JournalQuery{Key: "nothing"})
	check(storage.JournalQuery{Since: entry(2, "").Time}, 2, 3, 4, 5)
	check(storage.JournalQuery{Until: entry(2, "").Time}, 0, 1)
	check(storage.JournalQuery{Since: entry(1, "").Time, Until: entry(4, "").Time, Key: "x.example"}, 2)
	check(storage.JournalQuery{Limit: 2}, 4, 5)
	if got, err := a.ReadJournal(ctx, name+"-other", storage.JournalQuery{}); err != nil || len(got) != 0 {
		t.Errorf("ReadJournal of a journal never written: %d entries, %v; want none", len(got), err)
	}

	// Invalid entries: the whole Append is refused, nothing is kept.
	good := entry(6, "node-a")
	for _, bad := range []struct {
		what string
		name string
		e    storage.JournalEntry
	}{
		{"journal name with a slash", "a/b", good},
		{"journal name starting with a dot", ".j", good},
		{"node with a space", name, storage.JournalEntry{Time: good.Time, Node: "no de", Data: good.Data}},
		{"no time", name, storage.JournalEntry{Node: "node-a", Data: good.Data}},
		{"data not JSON", name, storage.JournalEntry{Time: good.Time, Node: "node-a", Data: json.RawMessage(`{"i":`)}},
		{"empty data", name, storage.JournalEntry{Time: good.Time, Node: "node-a"}},
		{"too many keys", name, storage.JournalEntry{Time: good.Time, Node: "node-a", Keys: make([]string, storage.MaxJournalKeys+1), Data: good.Data}},
		{"key with a NUL", name, storage.JournalEntry{Time: good.Time, Node: "node-a", Keys: []string{"a\x00b"}, Data: good.Data}},
		{"data too large", name, storage.JournalEntry{Time: good.Time, Node: "node-a", Data: json.RawMessage(`"` + strings.Repeat("x", storage.MaxJournalData) + `"`)}},
	} {
		err := a.Append(ctx, bad.name, []storage.JournalEntry{good, bad.e})
		if !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Append with %s: got %v, want ErrInvalidKey", bad.what, err)
		}
	}
	check(storage.JournalQuery{}, 0, 1, 2, 3, 4, 5)

	// Trim: everything before 11:00 goes (whole hours, so the 10:xx
	// entries too); later ones stay.
	if err := b.TrimJournal(ctx, name, time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC)); err != nil {
		t.Fatalf("TrimJournal: %v", err)
	}
	check(storage.JournalQuery{}, 4, 5)
	if err := a.TrimJournal(ctx, name+"-other", base); err != nil {
		t.Errorf("TrimJournal of a journal never written: %v", err)
	}
}
