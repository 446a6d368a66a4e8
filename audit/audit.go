package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/textclip"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/storage"
)

// Defaults of a Log's zero fields.
const (
	DefaultRetention     = 30 * 24 * time.Hour
	DefaultFlushInterval = 5 * time.Second
	DefaultMaxBuffered   = 10000
	flushAt              = 256       // records that trigger a flush at once
	gcEvery              = time.Hour // how often Flush looks for expired batches
	prefix               = "audit/"
	journalName          = "audit" // the journal of a storage.Journal
	defaultLimit         = 1000    // records a Query returns by default
)

// A Log is an append-only, bounded audit trail of a Manager's exchanges with
// its CAs and of its decisions, kept in a storage.Storage: every node of a
// fleet that shares the storage writes its own records, each says which
// node, and the trail survives restarts. Records are buffered and written
// at the latest every FlushInterval — appended to the storage's journal
// when it is a [storage.Journal] (rotated JSON-lines files, a PostgreSQL
// table), else as one stored value per flush under audit/ — and deleted
// once older than Retention.
//
// Give it to a Manager as its AuditLog (or as ACMEObserver, with
// [Log.OnEvent] called from OnEvent). A Log is safe for concurrent use;
// call [Log.Close] to write what is buffered and stop its goroutine. Its
// zero value plus Storage is ready.
type Log struct {
	// Storage keeps the trail. Required.
	Storage storage.Storage
	// Node names this process in its records and batch keys. Empty means
	// the host name and process ID.
	Node string
	// Retention is how long records are kept. Zero means DefaultRetention;
	// negative means this Log never deletes a batch, for a reader that
	// must not apply its own retention to a trail others keep (the Logs
	// of the nodes that write it still do).
	Retention time.Duration
	// FlushInterval is the longest a record waits in memory. Zero means
	// DefaultFlushInterval.
	FlushInterval time.Duration
	// MaxBuffered bounds the records kept in memory while storage fails;
	// beyond it the oldest are dropped and counted in the log. Zero means
	// DefaultMaxBuffered.
	MaxBuffered int
	// Logger receives the Log's own problems. Nil means silent.
	Logger *slog.Logger

	once    sync.Once
	mu      sync.Mutex
	buf     []record.Audit
	dropped int
	seq     int
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	closed  bool
	node    string
	now     func() time.Time
	lastGC  time.Time
	flushMu sync.Mutex // one flush at a time
	// retryKey is the key of a batch whose Store failed: the next flush
	// stores its records (and any added since) under it again, so that a
	// Store that failed after all (an answer lost, a folder sync that
	// failed after the rename) is overwritten, not kept twice. Guarded by
	// flushMu.
	retryKey string
}

func (l *Log) init() {
	l.once.Do(func() {
		l.node = l.Node
		if l.node == "" {
			h, _ := os.Hostname()
			l.node = fmt.Sprintf("%s-%d", h, os.Getpid())
		}
		l.node = sanitizeNode(l.node)
		if l.now == nil {
			l.now = time.Now
		}
		l.kick = make(chan struct{}, 1)
		l.stop = make(chan struct{})
		l.done = make(chan struct{})
		go l.loop()
	})
}

// sanitizeNode keeps a node name usable as a storage key segment.
func sanitizeNode(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.', r == '_':
			return r
		}
		return '-'
	}, s)
	if len(s) > 64 {
		s = s[:64]
	}
	if s == "" || s == "." || s == ".." {
		s = "node"
	}
	if s[0] == '.' {
		s = "n" + s[:min(len(s), 63)]
	}
	return s
}

func (l *Log) logger() *slog.Logger {
	if l.Logger != nil {
		return l.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Add appends a record; Time and Node are filled in when empty.
func (l *Log) Add(r record.Audit) {
	l.init()
	if r.Time.IsZero() {
		r.Time = l.now()
	}
	r.Node = l.node
	max := l.MaxBuffered
	if max <= 0 {
		max = DefaultMaxBuffered
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.buf = append(l.buf, r)
	if len(l.buf) > max {
		n := len(l.buf) - max
		l.buf = append(l.buf[:0], l.buf[n:]...)
		l.dropped += n
	}
	full := len(l.buf) >= flushAt
	l.mu.Unlock()
	if full {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

// ObserveExchange records an exchange with a CA (acme.Observer).
func (l *Log) ObserveExchange(e acme.Exchange) {
	r := record.Audit{
		Time: e.Time, Kind: record.KindExchange, Outcome: record.OutcomeOK,
		Issuer: e.Directory, Account: e.Account, Operation: e.Operation,
		Status: e.Status, Problem: e.ProblemType, Detail: e.ProblemDetail,
		RetryAfter: e.RetryAfter, Latency: e.Latency, Retries: e.Retries,
	}
	for _, id := range e.Identifiers {
		r.Names = append(r.Names, id.Value)
	}
	if e.Status == 0 || e.Status >= 400 || e.Err != "" {
		r.Outcome = record.OutcomeFailure
		if r.Detail == "" {
			r.Detail = e.Err
		}
	}
	l.Add(r)
}

// OnEvent records a Manager's event as a decision, except EventLoaded (a
// certificate read from storage, which with CacheCapacity happens at every
// reload of an evicted certificate). Chain it with an OnEvent of your own:
// m.OnEvent = func(e autotls.Event) { log.OnEvent(e); mine(e) }.
func (l *Log) OnEvent(e autotls.Event) {
	if e.Type == autotls.EventLoaded {
		// A certificate read from storage is neither an exchange nor a
		// decision, and with CacheCapacity every reload of an evicted
		// certificate is one: at a fleet's scale they would outweigh
		// the trail.
		return
	}
	r := record.Audit{
		Kind: record.KindDecision, Outcome: record.OutcomeOK, Issuer: e.Issuer, Operation: string(e.Type),
		Names: []string{e.Name}, Serial: e.Serial, NotAfter: e.NotAfter, Until: e.RetryAt,
	}
	switch e.Type {
	case autotls.EventFailed, autotls.EventIssuerFailed, autotls.EventRateLimited,
		autotls.EventNotStored, autotls.EventExpiring, autotls.EventExpired:
		r.Outcome = record.OutcomeFailure
	case autotls.EventRefused, autotls.EventNotRenewed:
		r.Outcome = record.OutcomeRefused
	case autotls.EventDNSRecordMissing:
		r.Outcome = record.OutcomeFailure
	}
	if e.DNSRecord != nil {
		// The record to publish, as a zone file line, and why.
		r.Detail = clip(e.DNSRecord.String()+": "+e.DNSRecord.Reason, 1024)
		r.Until = e.DNSRecord.PersistUntil
	}
	if e.Err != nil {
		r.Detail = clip(e.Err.Error(), 1024)
		var p *acme.Problem
		if errors.As(e.Err, &p) {
			r.Problem, r.Status, r.RetryAfter = p.Type, p.Status, p.RetryAfter
		}
	}
	l.Add(r)
}

func clip(s string, n int) string {
	return textclip.Prefix(s, n)
}

func (l *Log) flushInterval() time.Duration {
	if l.FlushInterval > 0 {
		return l.FlushInterval
	}
	return DefaultFlushInterval
}

func (l *Log) loop() {
	defer close(l.done)
	t := time.NewTicker(l.flushInterval())
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		case <-l.kick:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := l.Flush(ctx); err != nil {
			l.logger().Warn("audit: writing records failed; they stay buffered", "err", err)
		}
		cancel()
	}
}

// Flush writes the buffered records as one batch, and deletes batches past
// the retention (looking for them at most once an hour). On failure the
// records stay buffered for the next flush, which writes each of them once:
// a journal's Append keeps all of a batch or none (see
// [storage.Journal.Append]), and a batch stored as a value is stored again
// under the key that failed, overwriting whatever a failed Store may have
// left there.
func (l *Log) Flush(ctx context.Context) error {
	l.init()
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.mu.Lock()
	batch := l.buf
	l.buf = nil
	dropped := l.dropped
	l.dropped = 0
	l.seq++
	seq := l.seq
	l.mu.Unlock()
	if dropped > 0 {
		l.logger().Error("audit: records dropped while storage failed", "dropped", dropped)
	}
	if j, ok := l.Storage.(storage.Journal); ok && len(batch) > 0 {
		entries, refused := journalEntries(batch)
		if len(refused) > 0 {
			// Appended with the others, one such record would fail
			// every flush of the batch, for ever.
			l.logger().Error("audit: records the journal cannot hold dropped", "dropped", len(refused), "err", refused[0])
		}
		if len(entries) > 0 {
			if err := j.Append(ctx, journalName, entries); err != nil {
				l.mu.Lock()
				l.buf = append(batch, l.buf...) // keep them, oldest first
				l.mu.Unlock()
				return fmt.Errorf("audit: appending records: %w", err)
			}
		}
	} else if len(batch) > 0 {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		for _, r := range batch {
			if err := enc.Encode(r); err != nil {
				return fmt.Errorf("audit: encoding a record: %w", err)
			}
		}
		key := l.retryKey
		if key == "" {
			key = fmt.Sprintf("%s%s/%020d-%06d.jsonl", prefix, l.node, batch[0].Time.UnixNano(), seq%1000000)
		}
		if err := l.Storage.Store(ctx, key, b.Bytes()); err != nil {
			l.retryKey = key
			l.mu.Lock()
			l.buf = append(batch, l.buf...) // keep them, oldest first
			l.mu.Unlock()
			return fmt.Errorf("audit: storing records: %w", err)
		}
		l.retryKey = ""
	}
	if now := l.now(); now.Sub(l.lastGC) >= gcEvery {
		l.lastGC = now
		if err := l.expire(ctx, now); err != nil {
			return err
		}
	}
	return nil
}

// journalEntries turns records into journal entries, indexed by their
// names (those a journal accepts as keys, at most storage.MaxJournalKeys).
// It leaves out, with their errors, the records no journal accepts even
// clipped: a time outside the years 1970 to 9999, a field other than
// names and detail too long.
func journalEntries(batch []record.Audit) ([]storage.JournalEntry, []error) {
	out := make([]storage.JournalEntry, 0, len(batch))
	var refused []error
	for _, r := range batch {
		data, err := json.Marshal(r)
		if err != nil || len(data) > storage.MaxJournalData {
			r.Names, r.Detail = clipNames(r.Names), clip(r.Detail, 256)
			data, _ = json.Marshal(r)
		}
		var keys []string
		for _, n := range r.Names {
			if len(keys) < storage.MaxJournalKeys && storage.ValidJournalKey(n) && !slices.Contains(keys, n) {
				keys = append(keys, n)
			}
		}
		e := storage.JournalEntry{Time: r.Time, Node: r.Node, Keys: keys, Data: data}
		if err := storage.CheckJournalEntries(journalName, []storage.JournalEntry{e}); err != nil {
			refused = append(refused, err)
			continue
		}
		out = append(out, e)
	}
	return out, refused
}

// clipNames keeps the first names of a record too large for a journal.
func clipNames(names []string) []string {
	if len(names) > 100 {
		return names[:100]
	}
	return names
}

// expire deletes batches whose records are all past the retention. A
// batch's key starts with the time of its first record; records within a
// batch are at most a flush apart, so a batch is kept until its first
// record is a retention (plus a day of margin) old.
func (l *Log) expire(ctx context.Context, now time.Time) error {
	ret := l.Retention
	if ret < 0 {
		return nil
	}
	if ret == 0 {
		ret = DefaultRetention
	}
	if j, ok := l.Storage.(storage.Journal); ok {
		if err := j.TrimJournal(ctx, journalName, now.Add(-ret)); err != nil {
			return fmt.Errorf("audit: trimming the journal: %w", err)
		}
	}
	keys, err := l.Storage.List(ctx, prefix)
	if err != nil {
		return fmt.Errorf("audit: listing batches: %w", err)
	}
	cutoff := now.Add(-ret - 24*time.Hour)
	for _, k := range keys {
		if t, ok := batchTime(k); ok && t.Before(cutoff) {
			if err := l.Storage.Delete(ctx, k); err != nil {
				return fmt.Errorf("audit: deleting an old batch: %w", err)
			}
		}
	}
	return nil
}

// batchTime parses the time of a batch key audit/<node>/<nanos>-<seq>.jsonl.
func batchTime(key string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return time.Time{}, false
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return time.Time{}, false
	}
	name := rest[i+1:]
	j := strings.IndexByte(name, '-')
	if j < 0 {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(name[:j], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, n), true
}

// Close writes what is buffered and stops the Log's goroutine. Records
// added afterwards are dropped.
func (l *Log) Close() error {
	l.init()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return l.Flush(ctx)
}

// match reports whether r matches f.
func match(f record.AuditFilter, r record.Audit) bool {
	if f.Name != "" && !slices.Contains(r.Names, f.Name) {
		return false
	}
	if f.Issuer != "" && r.Issuer != f.Issuer {
		return false
	}
	if f.Outcome != "" && r.Outcome != f.Outcome {
		return false
	}
	if f.Kind != "" && r.Kind != f.Kind {
		return false
	}
	if f.Tenant != "" && r.Tenant != f.Tenant {
		return false
	}
	if f.Operation != "" && r.Operation != f.Operation {
		return false
	}
	if !f.Since.IsZero() && r.Time.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !r.Time.Before(f.Until) {
		return false
	}
	return true
}

// Query returns the stored records of every node that match f, oldest
// first (the newest Limit of them). Buffered records not yet written are
// included for this node. It reads every batch whose time range can
// match: bound it with Since.
func (l *Log) Query(ctx context.Context, f record.AuditFilter) ([]record.Audit, error) {
	l.init()
	keys, err := l.Storage.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("audit: listing batches: %w", err)
	}
	var out []record.Audit
	if j, ok := l.Storage.(storage.Journal); ok {
		q := storage.JournalQuery{Since: f.Since, Until: f.Until, Key: f.Name}
		// The journal can apply the limit when it applies every filter
		// and no batches stored as values (written before the storage
		// had a journal) are to be merged.
		if f.Issuer == "" && f.Outcome == "" && f.Kind == "" && f.Tenant == "" && f.Operation == "" && len(keys) == 0 {
			q.Limit = max(f.Limit, 0)
			if q.Limit == 0 {
				q.Limit = defaultLimit
			}
		}
		entries, err := j.ReadJournal(ctx, journalName, q)
		if err != nil {
			return nil, fmt.Errorf("audit: reading the journal: %w", err)
		}
		for _, e := range entries {
			var r record.Audit
			if json.Unmarshal(e.Data, &r) == nil && match(f, r) {
				out = append(out, r)
			}
		}
	}
	for _, k := range keys {
		t, ok := batchTime(k)
		if !ok || (!f.Until.IsZero() && !t.Before(f.Until)) || (!f.Since.IsZero() && t.Before(f.Since.Add(-time.Hour))) {
			continue
		}
		b, err := l.Storage.Load(ctx, k)
		if err != nil {
			continue // deleted meanwhile by retention
		}
		for line := range bytes.Lines(b) {
			var r record.Audit
			if json.Unmarshal(line, &r) == nil && match(f, r) {
				out = append(out, r)
			}
		}
	}
	l.mu.Lock()
	for _, r := range l.buf {
		if match(f, r) {
			out = append(out, r)
		}
	}
	l.mu.Unlock()
	slices.SortStableFunc(out, func(a, b record.Audit) int { return a.Time.Compare(b.Time) })
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}
