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
// object per line, appended with one write and an fsync per Append. Each
// node writes only its own files, so a fleet sharing a folder never
// interleaves writes; a line torn by a crash is skipped when read.
const (
	journalDir    = ".journal"
	journalLayout = "2006010215"
	journalExt    = ".jsonl"
)

// fileEntry is one line of a journal file.
type fileEntry struct {
	Time time.Time       `json:"time"`
	Node string          `json:"node"`
	Keys []string        `json:"keys,omitempty"`
	Data json.RawMessage `json:"data"`
}

var _ Journal = (*FileStorage)(nil)

// Append implements [Journal.Append].
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
	bufs := make(map[fileKey]*bytes.Buffer)
	var order []fileKey
	for _, e := range entries {
		k := fileKey{e.Node, e.Time.UTC().Format(journalLayout)}
		b := bufs[k]
		if b == nil {
			b = new(bytes.Buffer)
			bufs[k] = b
			order = append(order, k)
		}
		line, err := json.Marshal(fileEntry(e))
		if err != nil {
			return fmt.Errorf("storage: journal %q: %w", name, err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	s.journalMu.Lock()
	defer s.journalMu.Unlock()
	for _, k := range order {
		dir := path.Join(journalDir, name, k.node)
		if err := mkdirs(root, dir); err != nil {
			return fmt.Errorf("storage: journal %q: %w", name, err)
		}
		if err := appendFile(root, path.Join(dir, k.hour+journalExt), bufs[k].Bytes()); err != nil {
			return fmt.Errorf("storage: journal %q: %w", name, err)
		}
	}
	return nil
}

// appendFile appends b to the file at p (created 0600) in one write, and
// syncs it. A file whose last line a crash tore (it does not end in a
// newline) gets one first, so that only the torn line is lost when read,
// not the first line appended after it.
func appendFile(root *os.Root, p string, b []byte) error {
	f, err := root.OpenFile(p, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, fi.Size()-1); err == nil && last[0] != '\n' {
			b = append([]byte{'\n'}, b...)
		}
	}
	_, werr := f.Write(b)
	serr := f.Sync()
	cerr := f.Close()
	return errors.Join(werr, serr, cerr)
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
// files that can hold entries of q's time range; lines that do not parse
// (one torn by a crash, one of any length that is not an entry) are
// skipped.
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
	}
	return nil
}
