package storagetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/storage"
)

// WithFullDisk tells [Run] how to fill the disk under a client: fill(s,
// room) makes s's writes fail as on a full disk once room more units of
// writing are used (bytes written, and changes that write no data such as
// creating or renaming a file, as the backend counts them), and fill(s, -1)
// gives the space back. With it, Run walks room over every position of a
// Store, a Lock and a journal Append in turn, and checks, after the space
// returns, that every value is whole (the old one or the new one), that a
// failed Lock left no lock behind, and that a failed Append kept none of
// its entries and its retry keeps each of them once. Without it, that test
// is skipped.
func WithFullDisk(fill func(s storage.Storage, room int)) Option {
	return optionFunc(func(c *config) { c.fill = fill })
}

// maxRoom bounds the walk: an operation still failing with room for this
// many units is reported.
const maxRoom = 1 << 16

func (s *suite) testFullDisk(t *testing.T) {
	if s.cfg.fill == nil {
		t.Skip("no WithFullDisk: the suite cannot fill the backend's disk")
	}
	t.Run("Store", s.testFullDiskStore)
	t.Run("StoreNew", s.testFullDiskStoreNew)
	t.Run("Lock", s.testFullDiskLock)
	t.Run("Journal", s.testFullDiskJournal)
}

// walk runs, for room = 0, 1, 2, … until try succeeds: setup with space,
// try on a disk under st that has room for room units, and check with
// try's error once space is back.
func (s *suite) walk(t *testing.T, st storage.Storage, setup func(), try func() error, check func(room int, err error)) {
	t.Helper()
	for room := 0; room < maxRoom; room++ {
		setup()
		s.cfg.fill(st, room)
		err := try()
		s.cfg.fill(st, -1)
		check(room, err)
		if t.Failed() {
			return
		}
		if err == nil {
			t.Logf("%d positions failed as on a full disk, then it succeeded", room)
			return
		}
	}
	t.Fatalf("still failing with room for %d units", maxRoom)
}

// A Store over a value, cut short anywhere, leaves the old value or the
// new one, whole; its retry stores the new one.
func (s *suite) testFullDiskStore(t *testing.T) {
	st, other := s.newStorage(t), s.newStorage(t)
	ctx := t.Context()
	key := s.key("fulldisk", "value")
	old, nu := Sealed('o', 100), Sealed('n', 101)
	s.walk(t, st, func() { mustStore(t, ctx, st, key, old) },
		func() error { return st.Store(ctx, key, nu) },
		func(room int, err error) {
			v, lerr := other.Load(ctx, key)
			switch {
			case lerr != nil:
				t.Errorf("room %d: Store = %v, then Load = %v; want the old or the new value", room, err, lerr)
			case CheckSealed(v) != nil || !bytes.Equal(v, old) && !bytes.Equal(v, nu):
				t.Errorf("room %d: Store = %v, then Load = %d bytes (%v); want the old or the new value, whole", room, err, len(v), CheckSealed(v))
			case err == nil && !bytes.Equal(v, nu):
				t.Errorf("room %d: Store succeeded, then Load = the old value", room)
			}
			if err != nil {
				if rerr := st.Store(ctx, key, nu); rerr != nil {
					t.Errorf("room %d: Store once space is back: %v", room, rerr)
				} else if v := mustLoad(t, ctx, other, key); !bytes.Equal(v, nu) {
					t.Errorf("room %d: Load after the retried Store: %d bytes, want the new value", room, len(v))
				}
			}
			s.wantKeys(t, ctx, other, room, s.key("fulldisk")+"/", key)
		})
}

// A Store of a new key, cut short anywhere, leaves no value or the new
// one, whole, and no other key.
func (s *suite) testFullDiskStoreNew(t *testing.T) {
	st, other := s.newStorage(t), s.newStorage(t)
	ctx := t.Context()
	key := s.key("fulldisk-new", "a", "value")
	nu := Sealed('n', 100)
	s.walk(t, st, func() {
		if err := st.Delete(ctx, key); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	},
		func() error { return st.Store(ctx, key, nu) },
		func(room int, err error) {
			v, lerr := other.Load(ctx, key)
			switch {
			case errors.Is(lerr, fs.ErrNotExist) && err != nil:
				s.wantKeys(t, ctx, other, room, s.key("fulldisk-new")+"/")
			case lerr != nil:
				t.Errorf("room %d: Store = %v, then Load = %v; want the value, or none after an error", room, err, lerr)
			case !bytes.Equal(v, nu):
				t.Errorf("room %d: Store = %v, then Load = %d bytes (%v); want the new value, whole", room, err, len(v), CheckSealed(v))
			default:
				s.wantKeys(t, ctx, other, room, s.key("fulldisk-new")+"/", key)
			}
		})
	if err := st.Delete(ctx, key); err != nil {
		t.Errorf("Delete: %v", err)
	}
}

// wantKeys checks that the keys with prefix are exactly want.
func (s *suite) wantKeys(t *testing.T, ctx context.Context, st storage.Storage, room int, prefix string, want ...string) {
	t.Helper()
	got, err := st.List(ctx, prefix)
	if err != nil {
		t.Errorf("room %d: List: %v", room, err)
	} else if !slices.Equal(got, want) && len(got)+len(want) > 0 {
		t.Errorf("room %d: List(%q) = %q, want %q", room, prefix, got, want)
	}
}

// A Lock cut short anywhere fails and leaves no lock behind: another
// client gets it before a vanished holder's lock could expire.
func (s *suite) testFullDiskLock(t *testing.T) {
	st, other := s.newStorage(t), s.newStorage(t)
	ctx := t.Context()
	name := s.key("fulldisk-lock")
	var unlock func() error
	s.walk(t, st, func() {},
		func() error {
			var err error
			unlock, err = st.Lock(ctx, name)
			return err
		},
		func(room int, err error) {
			if err == nil {
				if err := unlock(); err != nil {
					t.Errorf("room %d: unlock: %v", room, err)
				}
			}
			start := time.Now()
			lctx, cancel := context.WithTimeout(ctx, 3*s.cfg.expiry+5*time.Second)
			defer cancel()
			u, lerr := other.Lock(lctx, name)
			if lerr != nil {
				t.Errorf("room %d: Lock = %v, then another client's Lock = %v; want the lock", room, err, lerr)
				return
			}
			// A lock left behind is taken over after the expiry at the
			// soonest.
			if d := time.Since(start); d >= s.cfg.expiry {
				t.Errorf("room %d: Lock = %v, then another client waited %v for the lock (expiry %v): a lock was left behind", room, err, d, s.cfg.expiry)
			}
			if err := u(); err != nil {
				t.Errorf("room %d: unlock: %v", room, err)
			}
		})
}

// A journal Append cut short anywhere keeps none of its entries; after it,
// another Append is read whole, and the retried Append keeps each entry
// once.
func (s *suite) testFullDiskJournal(t *testing.T) {
	st := s.newStorage(t)
	j, ok := st.(storage.Journal)
	if !ok {
		t.Skip("the backend does not implement storage.Journal")
	}
	other := s.newStorage(t).(storage.Journal)
	ctx := t.Context()
	name := strings.ReplaceAll(s.ns, "storagetest-", "j-") + "-full"
	end := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	defer j.TrimJournal(context.WithoutCancel(ctx), name, end)
	base := time.Date(2026, 12, 1, 9, 59, 0, 0, time.UTC)
	entry := func(i int, node string, at time.Duration) storage.JournalEntry {
		return storage.JournalEntry{Time: base.Add(at), Node: node, Keys: []string{fmt.Sprintf("k%d.example", i)}, Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}
	}
	first := []storage.JournalEntry{entry(0, "node-a", 0)}
	// Two hours of one node and a second node: three files.
	batch := []storage.JournalEntry{entry(1, "node-a", 0), entry(2, "node-a", time.Hour), entry(3, "node-b", time.Minute)}
	after := []storage.JournalEntry{entry(4, "node-a", 2*time.Minute)}
	read := func(room int) []int {
		t.Helper()
		got, err := other.ReadJournal(ctx, name, storage.JournalQuery{})
		if err != nil {
			t.Fatalf("room %d: ReadJournal: %v", room, err)
		}
		var is []int
		for _, e := range got {
			var d struct{ I int }
			if err := json.Unmarshal(e.Data, &d); err != nil {
				t.Errorf("room %d: entry data %q: %v", room, e.Data, err)
				continue
			}
			if want := fmt.Sprintf("k%d.example", d.I); len(e.Keys) != 1 || e.Keys[0] != want {
				t.Errorf("room %d: entry %d has keys %q, want [%s]", room, d.I, e.Keys, want)
			}
			is = append(is, d.I)
		}
		slices.Sort(is)
		return is
	}
	s.walk(t, st, func() {
		if err := j.TrimJournal(ctx, name, end); err != nil {
			t.Fatalf("TrimJournal: %v", err)
		}
		if err := j.Append(ctx, name, first); err != nil {
			t.Fatalf("Append: %v", err)
		}
	},
		func() error { return j.Append(ctx, name, batch) },
		func(room int, err error) {
			if err == nil {
				if got := read(room); !slices.Equal(got, []int{0, 1, 2, 3}) {
					t.Errorf("room %d: Append succeeded; entries %v, want [0 1 2 3] each once", room, got)
				}
				return
			}
			if got := read(room); !slices.Equal(got, []int{0}) {
				t.Errorf("room %d: Append = %v; entries %v, want [0]: a failed Append keeps nothing", room, err, got)
			}
			if err := j.Append(ctx, name, after); err != nil {
				t.Errorf("room %d: Append once space is back: %v", room, err)
			}
			if err := j.Append(ctx, name, batch); err != nil {
				t.Errorf("room %d: the retried Append: %v", room, err)
			}
			if got := read(room); !slices.Equal(got, []int{0, 1, 2, 3, 4}) {
				t.Errorf("room %d: Append = %v, then another and the retry; entries %v, want [0 1 2 3 4] each once", room, err, got)
			}
		})
}
