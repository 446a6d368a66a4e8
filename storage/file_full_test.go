package storage_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/storage"
)

// fullDisk is a disk with room for a number of units of writing: each byte
// written is one, and each change that writes no data (creating a file or
// a folder, linking, renaming, syncing) is one. Once they are used up, the
// change that needs more fails with ENOSPC (a write after writing what
// fits), and so does every later one, until the space returns. Truncating
// always works, as it frees space.
type fullDisk struct {
	mu   sync.Mutex
	left int // -1: no limit
	hit  int // changes refused
}

func newDisk(s *storage.FileStorage) *storage.FileStorage {
	storage.SetDisk(s, &fullDisk{left: -1})
	return s
}

// fill gives the disk under s room for room more units; -1 lifts the limit.
func fill(s storage.Storage, room int) {
	storage.DiskOf(s.(*storage.FileStorage)).(interface{ set(int) }).set(room)
}

func (d *fullDisk) set(room int) {
	d.mu.Lock()
	d.left = room
	d.mu.Unlock()
}

func (d *fullDisk) Room(n int) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.left < 0:
		return n, nil
	case n == 0 && d.left > 0:
		d.left--
		return 0, nil
	case n > 0 && d.left >= n:
		d.left -= n
		return n, nil
	}
	k := d.left
	d.left = 0
	d.hit++
	return k, syscall.ENOSPC
}

func (d *fullDisk) Shrink() error { return nil }

// journalFiles reads every journal file under dir, by path.
func journalFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := make(map[string]string)
	root := filepath.Join(dir, ".journal")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[strings.TrimPrefix(p, root)] = string(b)
		return err
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

// wantWholeLines checks that every journal file holds only whole entries,
// each ending in a newline, and returns their data, sorted.
func wantWholeLines(t *testing.T, files map[string]string) []string {
	t.Helper()
	var data []string
	for p, b := range files {
		if b != "" && !strings.HasSuffix(b, "\n") {
			t.Errorf("%s: %q does not end with a newline", p, b)
		}
		for line := range strings.Lines(b) {
			var e struct {
				Time time.Time       `json:"time"`
				Data json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal([]byte(line), &e); err != nil || e.Time.IsZero() {
				t.Errorf("%s: line %q is not an entry", p, line)
				continue
			}
			data = append(data, string(e.Data))
		}
	}
	slices.Sort(data)
	return data
}

func journalEntry(i int, node string, at time.Time) storage.JournalEntry {
	return storage.JournalEntry{Time: at, Node: node, Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}
}

// A journal Append that a full disk cuts short at any byte or step leaves
// every file exactly as it was (a new file empty), and once space returns
// the retried Append adds each entry once, in whole lines.
func TestFileJournalFullDisk(t *testing.T) {
	dir := t.TempDir()
	s := newDisk(storage.Dir(dir))
	defer s.Close()
	ctx := t.Context()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	if err := s.Append(ctx, "audit", []storage.JournalEntry{journalEntry(0, "web-1", at)}); err != nil {
		t.Fatal(err)
	}
	// The existing hour file, a new one, and a new node's.
	batch := []storage.JournalEntry{journalEntry(1, "web-1", at.Add(time.Minute)), journalEntry(2, "web-1", at.Add(time.Hour)), journalEntry(3, "web-2", at)}
	positions := 0
	for room := 0; ; room++ {
		before := journalFiles(t, dir)
		fill(s, room)
		err := s.Append(ctx, "audit", batch)
		fill(s, -1)
		if err == nil {
			break
		}
		positions++
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("room %d: Append = %v, want ENOSPC", room, err)
		}
		after := journalFiles(t, dir)
		for p, b := range after {
			if b != before[p] {
				t.Errorf("room %d: after the failed Append, %s holds %q, want %q", room, p, b, before[p])
			}
		}
		// The retry, and the state for the next position.
		if err := s.Append(ctx, "audit", batch); err != nil {
			t.Fatalf("room %d: Append once space is back: %v", room, err)
		}
		if got, want := wantWholeLines(t, journalFiles(t, dir)), []string{`{"i":0}`, `{"i":1}`, `{"i":2}`, `{"i":3}`}; !slices.Equal(got, want) {
			t.Fatalf("room %d: after the retry the journal holds %q, want %q", room, got, want)
		}
		if err := s.TrimJournal(ctx, "audit", at.Add(365*24*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := s.Append(ctx, "audit", []storage.JournalEntry{journalEntry(0, "web-1", at)}); err != nil {
			t.Fatal(err)
		}
	}
	if positions < 150 {
		t.Errorf("only %d failing positions walked; the batch alone is longer", positions)
	}
	t.Logf("%d positions", positions)
}

// stuckDisk is a fullDisk whose truncations fail too, while stuck is set.
type stuckDisk struct {
	fullDisk
	stuck bool
}

func (d *stuckDisk) setStuck(stuck bool) {
	d.mu.Lock()
	d.stuck = stuck
	d.mu.Unlock()
}

func (d *stuckDisk) Shrink() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stuck {
		return syscall.EIO
	}
	return nil
}

// When even cutting back a failed Append fails, the error says so, and the
// next Append to the file makes the cut first: the retried entries are
// kept once, in whole lines.
func TestFileJournalCutBackFails(t *testing.T) {
	dir := t.TempDir()
	s := storage.Dir(dir)
	d := &stuckDisk{fullDisk: fullDisk{left: -1}}
	storage.SetDisk(s, d)
	defer s.Close()
	ctx := t.Context()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	if err := s.Append(ctx, "audit", []storage.JournalEntry{journalEntry(0, "web-1", at)}); err != nil {
		t.Fatal(err)
	}
	batch := []storage.JournalEntry{journalEntry(1, "web-1", at.Add(time.Minute)), journalEntry(2, "web-1", at.Add(2*time.Minute))}
	d.setStuck(true)
	fill(s, 60) // a line and a half
	err := s.Append(ctx, "audit", batch)
	fill(s, -1)
	d.setStuck(false)
	if !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "may stay until the next append") {
		t.Fatalf("Append = %v, want ENOSPC and the failed cut", err)
	}
	if err := s.Append(ctx, "audit", batch); err != nil {
		t.Fatal(err)
	}
	if got, want := wantWholeLines(t, journalFiles(t, dir)), []string{`{"i":0}`, `{"i":1}`, `{"i":2}`}; !slices.Equal(got, want) {
		t.Errorf("journal after the retry: %q, want %q", got, want)
	}
	got, err := s.ReadJournal(ctx, "audit", storage.JournalQuery{})
	if err != nil || len(got) != 3 {
		t.Errorf("ReadJournal = %d entries, %v; want 3", len(got), err)
	}
}

// The cut left by a failed Append is not made when another writer has
// appended to the file since: its lines are not cut away.
func TestFileJournalCutBackAfterOtherWriter(t *testing.T) {
	dir := t.TempDir()
	s, other := storage.Dir(dir), storage.Dir(dir)
	d := &stuckDisk{fullDisk: fullDisk{left: -1}}
	storage.SetDisk(s, d)
	defer s.Close()
	defer other.Close()
	ctx := t.Context()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	if err := s.Append(ctx, "audit", []storage.JournalEntry{journalEntry(0, "web-1", at)}); err != nil {
		t.Fatal(err)
	}
	d.setStuck(true)
	fill(s, 90) // the first line, a part of the second
	err := s.Append(ctx, "audit", []storage.JournalEntry{journalEntry(1, "web-1", at), journalEntry(2, "web-1", at)})
	fill(s, -1)
	d.setStuck(false)
	if err == nil {
		t.Fatal("Append on a full disk succeeded")
	}
	// Another process writing as the same node appends meanwhile (and
	// cuts off the torn line).
	if err := other.Append(ctx, "audit", []storage.JournalEntry{journalEntry(3, "web-1", at)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, "audit", []storage.JournalEntry{journalEntry(4, "web-1", at)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadJournal(ctx, "audit", storage.JournalQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var is []string
	for _, e := range got {
		is = append(is, string(e.Data))
	}
	if !slices.Contains(is, `{"i":0}`) || !slices.Contains(is, `{"i":3}`) || !slices.Contains(is, `{"i":4}`) {
		t.Errorf("entries %q, want the other writer's and the later one", is)
	}
}

// A last line torn by a crash is cut off by the next Append, so the file
// holds only whole lines again; a whole entry whose newline is missing is
// kept, and given its newline.
func TestFileJournalTornTail(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	whole, _ := json.Marshal(map[string]any{"time": at, "node": "web-1", "data": map[string]int{"i": 1}})
	for _, c := range []struct {
		name, tail string
		want       []string
	}{
		{"torn", `{"time":"2026-12-01T10:00:30Z","node":"web-1","data":{"i`, []string{`{"i":0}`, `{"i":2}`}},
		{"whole without newline", string(whole), []string{`{"i":0}`, `{"i":1}`, `{"i":2}`}},
		{"garbage longer than any entry", strings.Repeat("x", 3<<20), []string{`{"i":0}`, `{"i":2}`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s := storage.Dir(dir)
			defer s.Close()
			ctx := t.Context()
			if err := s.Append(ctx, "audit", []storage.JournalEntry{journalEntry(0, "web-1", at)}); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, ".journal", "audit", "web-1", "2026120110.jsonl")
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.WriteString(c.tail)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Append(ctx, "audit", []storage.JournalEntry{journalEntry(2, "web-1", at.Add(time.Minute))}); err != nil {
				t.Fatal(err)
			}
			if got := wantWholeLines(t, journalFiles(t, dir)); !slices.Equal(got, c.want) {
				t.Errorf("journal: %q, want %q", got, c.want)
			}
		})
	}
}

// leftovers lists the temporary and lock files under dir.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasPrefix(d.Name(), ".tmp-") || strings.Contains(p, "/.locks/")) {
			out = append(out, strings.TrimPrefix(p, dir))
		}
		return nil
	})
	return out
}

// A Store or a Lock that a full disk cuts short at any byte or step leaves
// no temporary file and no lock file behind.
func TestFileFullDiskLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	s := newDisk(fastFile(dir))
	defer s.Close()
	ctx := t.Context()
	value := bytes.Repeat([]byte("v"), 100)
	for _, op := range []struct {
		name string
		do   func() error
	}{
		{"Store", func() error { return s.Store(ctx, "a/b/value", value) }},
		{"Lock", func() error {
			unlock, err := s.Lock(ctx, "a/lock")
			if err == nil {
				fill(s, -1)
				err = unlock()
			}
			return err
		}},
	} {
		failed := 0
		for room := 0; ; room++ {
			fill(s, room)
			err := op.do()
			fill(s, -1)
			if left := leftovers(t, dir); len(left) > 0 {
				t.Errorf("%s with room %d = %v; left behind: %q", op.name, room, err, left)
			}
			if err == nil {
				break
			}
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("%s with room %d = %v, want ENOSPC", op.name, room, err)
			}
			failed++
		}
		if failed < len(value) && op.name == "Store" || failed < 50 {
			t.Errorf("%s: only %d failing positions", op.name, failed)
		}
	}
}

// A heartbeat that a full disk cuts short leaves a whole lock record of
// the holder: a waiter sees a live lock, not a damaged one.
func TestFileLockRefreshFullDisk(t *testing.T) {
	dir := t.TempDir()
	s := newDisk(&storage.FileStorage{Path: dir, StaleAfter: time.Hour})
	defer s.Close()
	unlock, err := s.Lock(t.Context(), "beat")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	_, file := storage.KeyPath("beat")
	p := filepath.Join(dir, ".locks", file)
	read := func() (rec struct{ Owner, Beat string }) {
		t.Helper()
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &rec); err != nil || rec.Owner == "" {
			t.Fatalf("lock file %q: %v, want a whole record", b, err)
		}
		return rec
	}
	owner := read().Owner
	n := 0
	for room := 0; ; room++ {
		fill(s, room)
		err := storage.RefreshLocks(s, 99999999999999999)
		fill(s, -1)
		if rec := read(); rec.Owner != owner {
			t.Fatalf("room %d: owner %q, want %q", room, rec.Owner, owner)
		}
		if err == nil {
			break
		}
		n++
	}
	if n < 50 {
		t.Errorf("only %d failing positions", n)
	}
	if rec := read(); rec.Beat != "00099999999999999999" {
		t.Errorf("beat %q after the refresh", rec.Beat)
	}
}

// pausingDisk is a fullDisk whose first truncation (the cut-back of a
// failed Append) waits a moment, with paused closed when it starts
// waiting and cut set once it returns.
type pausingDisk struct {
	fullDisk
	once   sync.Once
	paused chan struct{}
	cut    atomic.Bool
}

func (d *pausingDisk) Shrink() error {
	d.once.Do(func() {
		close(d.paused)
		time.Sleep(300 * time.Millisecond) // time for the other writer to go wrong
		d.cut.Store(true)
	})
	return nil
}

// Two processes writing as the same node: while one cuts back its failed
// Append, the other's Append to the same file waits for it (flock), so the
// cut does not take the other's lines with it.
func TestFileJournalSameNodeWriters(t *testing.T) {
	dir := t.TempDir()
	s, other := storage.Dir(dir), storage.Dir(dir)
	d := &pausingDisk{fullDisk: fullDisk{left: -1}, paused: make(chan struct{})}
	storage.SetDisk(s, d)
	defer s.Close()
	defer other.Close()
	ctx := t.Context()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	if err := s.Append(ctx, "audit", []storage.JournalEntry{journalEntry(0, "web-1", at)}); err != nil {
		t.Fatal(err)
	}
	batch := []storage.JournalEntry{journalEntry(1, "web-1", at), journalEntry(2, "web-1", at)}
	fill(s, 90) // the first line, a part of the second
	failed := make(chan error, 1)
	go func() { failed <- s.Append(ctx, "audit", batch) }()
	<-d.paused
	fill(s, -1)
	// The other writer's Append, while the failed one is about to cut
	// back: it must wait, and not be cut away.
	if err := other.Append(ctx, "audit", []storage.JournalEntry{journalEntry(3, "web-1", at)}); err != nil {
		t.Fatal(err)
	}
	if !d.cut.Load() {
		t.Error("the other writer appended while the failed Append held the file")
	}
	if err := <-failed; err == nil {
		t.Fatal("Append on a full disk succeeded")
	}
	if err := s.Append(ctx, "audit", batch); err != nil {
		t.Fatal(err)
	}
	if got, want := wantWholeLines(t, journalFiles(t, dir)), []string{`{"i":0}`, `{"i":1}`, `{"i":2}`, `{"i":3}`}; !slices.Equal(got, want) {
		t.Errorf("journal: %q, want %q", got, want)
	}
}
