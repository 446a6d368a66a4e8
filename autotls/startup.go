package autotls

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/tlsmint/tlsmint/storage"
)

// The schedule index. A Manager with a million stored certificates must be
// ready at once and must not read a million values to learn when each is
// due, so it keeps, next to the certificates, a small index of their
// renewal plans: indexBuckets stored values per issuer,
// index/<issuer>/<bucket>.json, each mapping the names that hash to it to
// their expiry and planned renewal. Every node of a fleet updates the
// buckets of the certificates it stores (under a lock per bucket, merged
// with what is there), in batches at most IndexFlushInterval apart.
//
// At start-up, in the background, once the first handshakes have loaded
// their certificates (see awaitQuiet), the Manager reads the buckets (a
// thousand small reads, whatever the number of names) and plans every name
// at its renewal without loading its certificate; it then lists the stored
// certificates and loads, at a paced rate, only those the index does not
// know (stored by an older version, or by a node that crashed before its
// flush), adding them to the index. The index is only a hint: a step for a
// name always acts on what storage holds.
const (
	indexBuckets = 1024
	// IndexFlushInterval is the longest an update of the schedule index
	// waits in memory.
	IndexFlushInterval = 10 * time.Second
	// discoveryRate paces the loads of stored certificates the index
	// does not know, per second.
	discoveryRate = 500
	indexVersion  = 1
	indexLockWait = 30 * time.Second
	// startupQuiet and startupMaxWait: see awaitQuiet.
	startupQuiet   = 250 * time.Millisecond
	startupMaxWait = 5 * time.Second
)

// awaitQuiet waits until no handshake has looked up a certificate in
// storage for startupQuiet, or until startupMaxWait has passed since the
// Manager was made, whichever comes first, and reports whether ctx is
// still live. The discovery and the storage watcher wait for it: their
// reads (the index's buckets, the list of stored certificates, the file
// watcher's first scan, which stats every file) would otherwise compete
// with the first handshakes' loads for the CPU and the disk, while what
// they build is not due for hours (see watch for the changes made while
// the watcher waits). Real time, not the Manager's clock: it paces
// storage reads. With fastDiscovery (tests) it does not wait; with
// startHold (tests) it waits for that channel to close instead.
func (m *Manager) awaitQuiet(ctx context.Context) bool {
	st := m.st
	if st.startHold != nil {
		select {
		case <-st.startHold:
		case <-ctx.Done():
		}
		return ctx.Err() == nil
	}
	if st.fastDiscovery {
		return ctx.Err() == nil
	}
	wait := startupQuiet
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		since := time.Since(st.born)
		left := startupMaxWait - since
		idle := since - time.Duration(st.lastLoad.Load())
		if left <= 0 || idle >= startupQuiet {
			return true
		}
		wait = min(startupQuiet-idle, left)
	}
}

// indexValue is one bucket: name → its indexRecord. Issuer is the
// directory URL of the bucket's issuer, so that a reader of the storage
// learns the issuers from the index without listing every certificate
// (empty in buckets written before it was added).
type indexValue struct {
	Version int                    `json:"version"`
	Issuer  string                 `json:"issuer,omitempty"`
	Names   map[string]indexRecord `json:"names"`
}

// An indexRecord is what the index knows of one name's certificate, Unix
// seconds: [not after, renewal, not before, last failed renewal (0:
// none)]. Readers of a shorter record (written before the last two were
// added) see zeros; older readers ignore the extra elements. Views
// (Manager.Snapshot) read it to list a name without loading its
// certificate.
type indexRecord [4]int64

// indexRef is one bucket of one issuer.
type indexRef struct {
	iss    *issuer
	bucket int
}

func (r indexRef) key() string { return fmt.Sprintf("index/%s/%03x.json", r.iss.key, r.bucket) }

func (r indexRef) lock() string { return fmt.Sprintf("index-%s-%03x", r.iss.key, r.bucket) }

// bucketOf is the bucket of a name: FNV-1a, the same on every node.
func bucketOf(name string) int {
	h := uint32(2166136261)
	for i := 0; i < len(name); i++ {
		h ^= uint32(name[i])
		h *= 16777619
	}
	return int(h % indexBuckets)
}

// index holds the updates not yet written.
type index struct {
	mu      sync.Mutex
	pending map[indexRef]map[string]indexRecord
}

// indexPut records e's plan for the index.
func (m *Manager) indexPut(e *entry) {
	st := m.st
	if st.storeErr != nil || e.iss == nil {
		return
	}
	st.index.put(indexRef{e.iss, bucketOf(e.name)}, e.name, indexRecord{e.notAfter.Unix(), e.renewAt.Unix(), e.notBefore.Unix(), 0})
}

// put records rec as name's pending update in ref's bucket.
func (ix *index) put(ref indexRef, name string, rec indexRecord) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.pending == nil {
		ix.pending = make(map[indexRef]map[string]indexRecord)
	}
	b := ix.pending[ref]
	if b == nil {
		b = make(map[string]indexRecord)
		ix.pending[ref] = b
	}
	b[name] = rec
}

// restore puts back the updates of ref's bucket that a write could not
// store, except those of names updated again since.
func (ix *index) restore(ref indexRef, names map[string]indexRecord) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.pending == nil {
		ix.pending = make(map[indexRef]map[string]indexRecord)
	}
	b := ix.pending[ref]
	if b == nil {
		ix.pending[ref] = names
		return
	}
	for n, v := range names {
		if _, newer := b[n]; !newer {
			b[n] = v
		}
	}
}

// flushIndex writes the pending updates, each bucket under its lock,
// merged with what storage holds. Updates that could not be written stay
// pending.
func (m *Manager) flushIndex(ctx context.Context) error {
	st := m.st
	st.index.mu.Lock()
	pending := st.index.pending
	st.index.pending = nil
	st.index.mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	store, err := m.storage()
	if err != nil {
		return err
	}
	var errs []error
	for ref, names := range pending {
		if err := m.writeBucket(ctx, store, ref, names); err != nil {
			errs = append(errs, err)
			st.index.restore(ref, names)
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) writeBucket(ctx context.Context, store storage.Storage, ref indexRef, names map[string]indexRecord) error {
	lctx, cancel := context.WithTimeout(ctx, indexLockWait)
	defer cancel()
	unlock, err := store.Lock(lctx, ref.lock())
	if err != nil {
		return fmt.Errorf("autotls: locking the schedule index: %w", err)
	}
	defer unlock()
	v, err := readBucket(ctx, store, ref)
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, errCorrupt) {
		return err
	}
	if v.Names == nil {
		v.Names = make(map[string]indexRecord, len(names))
	}
	for n, x := range names {
		if cur, ok := v.Names[n]; ok && x[2] != 0 && cur[2] > x[2] {
			// Another node stored a newer certificate (issued later)
			// since this update was made: an older one's record, such
			// as a failed renewal's, does not replace it.
			continue
		}
		v.Names[n] = x
	}
	// Certificates long expired leave the index: a name is kept for a
	// year after its expiry at most.
	horizon := m.now().Add(-365 * 24 * time.Hour).Unix()
	for n, x := range v.Names {
		if x[0] < horizon {
			delete(v.Names, n)
		}
	}
	v.Version = indexVersion
	v.Issuer = ref.iss.url
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := store.Store(ctx, ref.key(), b); err != nil {
		return fmt.Errorf("autotls: storing the schedule index: %w", err)
	}
	return nil
}

// readBucket loads and decodes one bucket.
func readBucket(ctx context.Context, store storage.Storage, ref indexRef) (indexValue, error) {
	var v indexValue
	b, err := store.Load(ctx, ref.key())
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(b, &v); err != nil || v.Version != indexVersion {
		return indexValue{}, fmt.Errorf("%w: schedule index %s", errCorrupt, ref.key())
	}
	return v, nil
}

// startBackground starts, once, the index writer and the discovery of the
// stored certificates that builds the schedule. It is called by the
// Manager's first use as a server (TLSConfig, Listen, Manage, a handshake
// that reaches storage), never by a refused handshake.
func (m *Manager) startBackground() {
	st := m.st
	st.bgOnce.Do(func() {
		if st.storeErr != nil {
			close(st.discovered)
			return
		}
		started := st.flights.ifOpen(func() {
			st.wg.Add(2)
			go func() {
				defer st.wg.Done()
				m.indexLoop()
			}()
			go func() {
				defer st.wg.Done()
				defer close(st.discovered)
				defer func() {
					if v := recover(); v != nil {
						m.recovered("", v)
					}
				}()
				m.discover(st.ctx)
			}()
		})
		if !started {
			close(st.discovered)
		}
	})
}

// indexLoop flushes the index every IndexFlushInterval, and once more when
// the Manager closes.
func (m *Manager) indexLoop() {
	st := m.st
	// Real time, not the Manager's clock: it paces storage writes.
	t := time.NewTicker(IndexFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-st.ctx.Done():
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := m.flushIndex(ctx); err != nil {
				st.log.Warn("autotls: writing the schedule index at close", "err", err)
			}
			cancel()
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(st.ctx, time.Minute)
			if err := m.flushIndex(ctx); err != nil && st.ctx.Err() == nil {
				st.log.Warn("autotls: writing the schedule index; it is retried", "err", err)
			}
			cancel()
		}
	}
}

// discover builds the schedule from storage, once the first handshakes'
// loads pause (awaitQuiet): every name of the index is planned at its
// renewal (or at its first ARI look, see planFromIndex), then every stored
// certificate the index did not know is loaded (paced) and planned.
func (m *Manager) discover(ctx context.Context) {
	st := m.st
	store, err := m.storage()
	if err != nil {
		return
	}
	if !m.awaitQuiet(ctx) {
		return
	}
	start := time.Now()
	indexed, loaded := 0, 0
	for _, iss := range st.issuers {
		buckets, err := store.List(ctx, "index/"+iss.key+"/")
		if err != nil {
			st.log.Warn("autotls: listing the schedule index", "err", err)
		}
		for _, k := range buckets {
			var b int
			if _, err := fmt.Sscanf(k, "index/"+iss.key+"/%03x.json", &b); err != nil || b < 0 || b >= indexBuckets || (indexRef{iss, b}).key() != k {
				continue
			}
			if ctx.Err() != nil {
				return
			}
			v, err := readBucket(ctx, store, indexRef{iss, b})
			if err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					st.log.Warn("autotls: reading the schedule index", "err", err)
				}
				continue
			}
			for name, x := range v.Names {
				if m.planFromIndex(iss, name, x) {
					indexed++
				}
			}
		}
	}
	// Real time, not the Manager's clock: it paces storage reads.
	pace := time.NewTicker(time.Second / discoveryRate)
	defer pace.Stop()
	for _, iss := range st.issuers {
		prefix := "certificates/" + iss.key + "/"
		keys, err := m.listRetrying(ctx, store, prefix)
		if err != nil {
			return // closing
		}
		for _, k := range keys {
			name := nameFromKey(strings.TrimSuffix(strings.TrimPrefix(k, prefix), ".json"))
			if st.sched.has(name) || st.cache.get(name) != nil {
				continue
			}
			if !st.fastDiscovery {
				select {
				case <-ctx.Done():
					return
				case <-pace.C:
				}
			}
			e, err := m.loadStoredFrom(ctx, iss, name)
			if err != nil {
				continue
			}
			if e.reason != ReasonARIPast {
				e.renewAt = m.catchUp(name, e.renewAt, e.notBefore, e.notAfter)
			}
			if t, ok := m.firstARILook(iss, defaultARIPoll); ok {
				// The stored poll time if it is still ahead, else a
				// look within defaultARIPoll (see planFromIndex).
				e.ariPoll = t
				if a := e.ari; a != nil && a.NextPoll.After(m.now()) && a.NextPoll.Before(t) {
					e.ariPoll = a.NextPoll
				}
			}
			if st.cache.get(name) != nil || !st.sched.atIfNone(m, name, planTime(e, e.renewAt)) {
				continue // served or planned meanwhile
			}
			m.indexPut(e)
			loaded++
		}
	}
	st.indexComplete.Store(true)
	st.log.Info("autotls: schedule built from storage", "from_index", indexed, "loaded", loaded, "took", time.Since(start))
}

// listRetrying lists prefix for the discovery, trying again after the
// failure backoff (jittered) until it succeeds or ctx ends: the
// certificates the index does not know are planned only through this
// list, so one failed List must not leave them unplanned until a handshake
// happens to load them.
func (m *Manager) listRetrying(ctx context.Context, store storage.Storage, prefix string) ([]string, error) {
	for {
		keys, err := store.List(ctx, prefix)
		if err == nil {
			return keys, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		wait := jitter(m.failureBackoff())
		m.st.log.Warn("autotls: listing stored certificates to schedule them; trying again", "err", err, "in", wait)
		if err := m.st.clock.sleep(ctx, wait, false); err != nil {
			return nil, ctx.Err()
		}
	}
}

// planFromIndex plans name from its index record unless it is planned or
// in memory already; it reports whether it did. The index holds no ARI
// poll times (they would make every bucket change every few hours), so
// where the CA may offer ARI the name is also looked at once within
// defaultARIPoll of the start (firstARILook): its step loads it, and the
// poll its stored renewal information asks for follows. Without that, a
// certificate not served since a restart would learn of a revocation
// only at its planned renewal.
func (m *Manager) planFromIndex(iss *issuer, name string, x indexRecord) bool {
	st := m.st
	if st.cache.get(name) != nil {
		return false
	}
	notAfter, renewAt := time.Unix(x[0], 0), time.Unix(x[1], 0)
	var notBefore time.Time // zero in a record written before it held one
	if x[2] != 0 {
		notBefore = time.Unix(x[2], 0)
	}
	next := m.catchUp(name, renewAt, notBefore, notAfter)
	if notAfter.Before(next) {
		next = notAfter
	}
	if t, ok := m.firstARILook(iss, defaultARIPoll); ok && t.Before(next) {
		next = t
	}
	return st.sched.atIfNone(m, name, next)
}

// firstARILook is when a certificate of iss without its renewal
// information is first looked at for an ARI poll: a random point of the
// next spread (now when spread is not positive), so that many of them
// neither reach storage nor the CA at once. Certificates planned at
// start-up or loaded for a handshake use defaultARIPoll, new ones
// ariFirstSpread, loaded ones the loader planned none for ariLoadSpread
// (install). ok is false when iss is known to offer no ARI.
func (m *Manager) firstARILook(iss *issuer, spread time.Duration) (time.Time, bool) {
	if iss.noARI.Load() {
		return time.Time{}, false
	}
	t := m.now()
	if spread > 0 {
		t = t.Add(time.Duration(rand.Int64N(int64(spread))))
	}
	return t, true
}
