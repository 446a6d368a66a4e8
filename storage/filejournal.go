package storage

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"
)

// The file backend keeps each journal under .journal/<name>/<node>/ (a name
// no key maps to), in JSON-lines files rotated every hour: <YYYYMMDDHH>.jsonl
// holds the node's entries whose Time falls in that UTC hour, one JSON
// object per line. Each node writes only its own files, so a fleet sharing
// a folder never interleaves writes.
//
// An Append is all or nothing. It writes each file's lines with one write
// and an fsync; when a write or an fsync fails (a full disk), every file
// the Append wrote to is cut back to the size it had before, so that a
// caller that retries the same entries keeps each of them once. If even
// the cut fails, the next Append to the file makes it first (when nothing
// else was appended meanwhile). An Append holds an exclusive flock(2) on
// each file it writes (on Unix systems but Solaris, illumos and AIX), so
// that two processes writing as the same node cannot cut back each
// other's lines. A ReadJournal at the same time may see the lines of an
// Append that then fails and is cut back.
//
// A line a crash tore (a strict prefix of a JSON object, which never
// parses) is cut off by the next Append to its file. So the only line a
// reader skips is a file's incomplete last line, one a crash tore and no
// Append followed yet or one being written, besides lines this backend did
// not write (damage by hand).
const (
	journalDir    = ".journal"
	journalLayout = "2006010215"
	journalExt    = ".jsonl"
	// maxJournalLine bounds the length of a line that can hold an entry
	// (its data and keys, escaped): a torn last line longer than this is
	// not read to see whether it is a whole entry.
	maxJournalLine = 1 << 20
)

// fileEntry is one line of a journal file.
type fileEntry struct {
	Time time.Time       `json:"time"`
	Node string          `json:"node"`
	Keys []string        `json:"keys,omitempty"`
	Data json.RawMessage `json:"data"`
}

// cut is an Append that failed and could not be cut back at once: the
// next Append to its file cuts the file back to size from, if its size is
// still to (else another writer appended meanwhile, and the lines stay).
type cut struct{ from, to int64 }

// journalWrite is one file an Append writes to.
type journalWrite struct {
	f       *os.File
	path    string
	size    int64 // before the Append: where a failed one is cut back to
	newline bool  // the file ends with a whole entry without its newline
	written bool  // a write was tried
}

var _ Journal = (*FileStorage)(nil)

// Append implements [Journal.Append], all or nothing: a write or fsync
// that fails part-way (a full disk) is cut back in every file it wrote to,
// so after an error none of the entries is kept, unless the cut failed too
// (the error says so); that cut is then made by the next Append to the
// file, if no other process appended to it meanwhile.
func (s *FileStorage) Append(ctx context.Context, name string, entries []JournalEntry) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("storage: journal %q: %w", name, err)
	}
	if err := CheckJournalEntries(name, entries); err != nil {
		return fmt.Errorf("storage: journal append: %w", err)
	}
	root, err := s.openRoot()
	if err != nil {
		return fmt.Errorf("storage: journal %q: %w", name, err)
	}
	// One buffer per file: node and hour.
	type fileKey struct{ node, hour string }
	bufs := make(map[fileKey][]byte)
	var order []fileKey
	for _, e := range entries {
		k := fileKey{e.Node, e.Time.UTC().Format(journalLayout)}
		if _, ok := bufs[k]; !ok {
			order = append(order, k)
		}
		line, err := json.Marshal(fileEntry(e))
		if err != nil {
			return fmt.Errorf("storage: journal %q: %w", name, err)
		}
		bufs[k] = append(append(bufs[k], line...), '\n')
	}
	// Files are locked in one order, so that two Appends never wait for
	// each other in a circle.
	slices.SortFunc(order, func(a, b fileKey) int { return cmp.Or(cmp.Compare(a.node, b.node), cmp.Compare(a.hour, b.hour)) })
	s.journalMu.Lock()
	defer s.journalMu.Unlock()
	files := make([]*journalWrite, 0, len(order))
	defer func() {
		for _, w := range files {
			_ = w.f.Close() // releases its flock
		}
	}()
	for _, k := range order {
		dir := path.Join(journalDir, name, k.node)
		w, err := s.openJournal(ctx, root, dir, path.Join(dir, k.hour+journalExt))
		if err != nil {
			return fmt.Errorf("storage: journal %q: %w", name, err)
		}
		files = append(files, w)
	}
	for i, w := range files {
		if err := s.appendLines(w, bufs[order[i]]); err != nil {
			return fmt.Errorf("storage: journal %q: %w", name, errors.Join(err, s.cutBack(files[:i+1])))
		}
	}
	// Once the data is synced, a failed Close changes nothing: reporting
	// it would make the caller append the entries again.
	return nil
}

// openJournal opens (creating it 0600, with its folder) the journal file
// at p, locks it, makes a cut left over from a failed Append and cuts off
// a line torn by a crash.
func (s *FileStorage) openJournal(ctx context.Context, root *os.Root, dir, p string) (*journalWrite, error) {
	if err := s.mkdirs(root, dir); err != nil {
		return nil, err
	}
	f, err := root.OpenFile(p, os.O_RDWR|os.O_APPEND, 0)
	created := false
	if errors.Is(err, fs.ErrNotExist) {
		if err = s.change("open", p); err == nil {
			f, err = root.OpenFile(p, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
			created = true
		}
	}
	if err != nil {
		return nil, err
	}
	w := &journalWrite{f: f, path: p}
	err = lockFile(ctx, f)
	if err == nil && created {
		err = s.syncFolder(root, dir)
	}
	if err == nil {
		err = s.tidyJournal(w)
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return w, nil
}

// tidyJournal makes the cut left over from a failed Append to w's file,
// if any, and cuts off a last line a crash tore (a whole entry whose
// newline is missing is kept, and given one before the next lines). It
// sets w.size.
func (s *FileStorage) tidyJournal(w *journalWrite) error {
	fi, err := w.f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if c, ok := s.journalCuts[w.path]; ok {
		if size == c.to && c.from < c.to {
			if err := s.truncate(w.f, c.from); err != nil {
				return fmt.Errorf("cutting back a failed append: %w", err)
			}
			size = c.from
		}
		delete(s.journalCuts, w.path)
	}
	last := make([]byte, 1)
	if size > 0 {
		if _, err := w.f.ReadAt(last, size-1); err != nil {
			return err
		}
	}
	if size > 0 && last[0] != '\n' {
		end, tail, err := lastLine(w.f, size)
		if err != nil {
			return err
		}
		var fe fileEntry
		switch {
		case tail != nil && json.Unmarshal(tail, &fe) == nil && !fe.Time.IsZero():
			w.newline = true
		default:
			if err := s.truncate(w.f, end); err != nil {
				return fmt.Errorf("cutting off a torn line: %w", err)
			}
			size = end
		}
	}
	w.size = size
	return nil
}

// lastLine finds where the last whole line of the size bytes of f ends,
// and returns the bytes after it when there are at most maxJournalLine.
func lastLine(f *os.File, size int64) (end int64, tail []byte, err error) {
	buf := make([]byte, 64<<10)
	var rest [][]byte // the chunks after the last newline, last first
	n := 0
	for at := size; at > 0; {
		k := int(min(int64(len(buf)), at))
		at -= int64(k)
		if _, err := f.ReadAt(buf[:k], at); err != nil {
			return 0, nil, err
		}
		if i := bytes.LastIndexByte(buf[:k], '\n'); i >= 0 {
			end = at + int64(i) + 1
			rest = append(rest, buf[i+1:k])
			break
		}
		if n += k; n <= maxJournalLine {
			rest = append(rest, slices.Clone(buf[:k]))
		}
	}
	if size-end > maxJournalLine {
		return end, nil, nil
	}
	for _, c := range slices.Backward(rest) {
		tail = append(tail, c...)
	}
	return end, tail, nil
}

// appendLines appends b to w's file in one write, and syncs it.
func (s *FileStorage) appendLines(w *journalWrite, b []byte) error {
	if w.newline {
		b = append([]byte{'\n'}, b...)
	}
	w.written = true
	if err := s.write(w.f, b, -1); err != nil {
		return err
	}
	return s.sync(w.f)
}

// cutBack cuts the files of a failed Append back to their sizes before
// it. A cut that fails is left for the next Append to the file.
func (s *FileStorage) cutBack(files []*journalWrite) error {
	var errs []error
	for _, w := range files {
		if !w.written {
			continue
		}
		err := s.truncate(w.f, w.size)
		if err == nil {
			// A truncation frees space: its sync does not ask the disk.
			err = w.f.Sync()
		}
		if err == nil {
			continue
		}
		errs = append(errs, fmt.Errorf("cutting back %s, whose records may stay until the next append: %w", w.path, err))
		if fi, serr := w.f.Stat(); serr == nil {
			if s.journalCuts == nil {
				s.journalCuts = make(map[string]cut)
			}
			s.journalCuts[w.path] = cut{from: w.size, to: fi.Size()}
		}
	}
	return errors.Join(errs...)
}

// journalFile is one hour file of one node.
type journalFile struct {
	path  string
	start time.Time // the hour's start
}

// journalFiles lists the hour files of journal name, oldest first.
func (s *FileStorage) journalFiles(ctx context.Context, name string) (*os.Root, []journalFile, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if err := CheckJournalName(name); err != nil {
		return nil, nil, err
	}
	root, err := s.openRoot()
	if err != nil {
		return nil, nil, err
	}
	top := path.Join(journalDir, name)
	nodes, err := readDir(root, top)
	if err != nil {
		return nil, nil, err
	}
	var files []journalFile
	for _, n := range nodes {
		if !n.IsDir() || CheckJournalName(n.Name()) != nil {
			continue
		}
		dir := path.Join(top, n.Name())
		hours, err := readDir(root, dir)
		if err != nil {
			return nil, nil, err
		}
		for _, h := range hours {
			stem, ok := strings.CutSuffix(h.Name(), journalExt)
			if !ok || !h.Type().IsRegular() {
				continue
			}
			t, err := time.Parse(journalLayout, stem)
			if err != nil || t.Format(journalLayout) != stem {
				continue
			}
			files = append(files, journalFile{path.Join(dir, h.Name()), t})
		}
	}
	slices.SortFunc(files, func(a, b journalFile) int { return cmp.Or(a.start.Compare(b.start), cmp.Compare(a.path, b.path)) })
	return root, files, nil
}

// readDir lists dir, or nothing when it does not exist.
func readDir(root *os.Root, dir string) ([]fs.DirEntry, error) {
	d, err := root.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	entries, err := d.ReadDir(-1)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return entries, err
}

// ReadJournal implements [Journal.ReadJournal]. It reads only the hour
// files that can hold entries of q's time range. Lines that are not
// entries are skipped: a file's incomplete last line (one a crash tore,
// or one being written), and lines of any length this backend did not
// write.
func (s *FileStorage) ReadJournal(ctx context.Context, name string, q JournalQuery) ([]JournalEntry, error) {
	root, files, err := s.journalFiles(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("storage: journal %q: %w", name, err)
	}
	var out []JournalEntry
	for _, f := range files {
		if (!q.Until.IsZero() && !f.start.Before(q.Until)) || (!q.Since.IsZero() && !f.start.Add(time.Hour).After(q.Since)) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("storage: journal %q: %w", name, err)
		}
		b, err := root.ReadFile(f.path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // trimmed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("storage: journal %q: %w", name, err)
		}
		for line := range bytes.Lines(b) {
			var fe fileEntry
			if json.Unmarshal(line, &fe) != nil || fe.Time.IsZero() {
				continue
			}
			e := JournalEntry(fe)
			if q.matches(e) {
				out = append(out, e)
			}
		}
	}
	return limitEntries(out, q.Limit), nil
}

// limitEntries sorts entries by time (stable) and keeps the newest limit.
func limitEntries(out []JournalEntry, limit int) []JournalEntry {
	slices.SortStableFunc(out, func(a, b JournalEntry) int { return a.Time.Compare(b.Time) })
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

// TrimJournal implements [Journal.TrimJournal]: it deletes the hour files
// that end at or before before.
func (s *FileStorage) TrimJournal(ctx context.Context, name string, before time.Time) error {
	root, files, err := s.journalFiles(ctx, name)
	if err != nil {
		return fmt.Errorf("storage: journal %q: %w", name, err)
	}
	s.journalMu.Lock()
	defer s.journalMu.Unlock()
	for _, f := range files {
		if f.start.Add(time.Hour).After(before) {
			continue
		}
		if err := root.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("storage: journal %q: %w", name, err)
		}
		delete(s.journalCuts, f.path)
	}
	return nil
}
