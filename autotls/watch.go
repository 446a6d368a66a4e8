package autotls

import (
	"context"
	"strings"
	"time"

	"github.com/tlsmint/tlsmint/storage"
)

// watchRetry is the wait before watching again after the watch ended
// while the Manager runs (a lost database connection, say).
const watchRetry = 10 * time.Second

// catchUpSlack: see watch.
const catchUpSlack = 10 * time.Minute

// catchUpStored picks up each certificate in memory whose stored value, under
// any of the Manager's issuers, was modified after since.
func (m *Manager) catchUpStored(since time.Time) {
	st := m.st
	for _, e := range st.cache.all() {
		for _, iss := range st.issuers {
			if st.ctx.Err() != nil {
				return
			}
			ctx, cancel := context.WithTimeout(st.ctx, 30*time.Second)
			ki, err := st.store.Stat(ctx, certKey(iss, e.name))
			cancel()
			if err == nil && ki.Modified.After(since) {
				m.pickUp(e.name)
				break
			}
		}
	}
}

// watch follows changes to the stored certificates when the storage
// reports them ([storage.Watcher]: PostgreSQL's LISTEN/NOTIFY, the file
// backend's polling): a certificate another node obtained or renewed is
// loaded at once instead of at this node's next scheduled check. It runs
// until the Manager closes.
//
// It starts watching once the first handshakes' loads pause (awaitQuiet):
// the file backend's Watch first stats every stored file, work that would
// slow those handshakes. Changes stored before the watch began are not
// reported by it, so once it has begun, every certificate in memory whose
// stored value was modified since shortly before the Manager was made
// (catchUpSlack earlier, for the clocks of storage servers) is picked up
// (see pickUp: loaded, and installed only when newer).
func (m *Manager) watch() {
	st := m.st
	w, ok := st.store.(storage.Watcher)
	if !ok {
		return
	}
	if !m.awaitQuiet(st.ctx) {
		return
	}
	const prefix = "certificates/"
	caughtUp := false
	for st.ctx.Err() == nil {
		ch, err := w.Watch(st.ctx, prefix)
		if err != nil {
			st.log.Warn("autotls: watching storage for other nodes' certificates failed", "err", err)
		} else {
			if !caughtUp {
				caughtUp = true
				m.catchUpStored(st.born.Add(-catchUpSlack))
			}
			for ev := range ch {
				if ev.Deleted {
					continue
				}
				// certificates/<issuer>/<name>.json, for any issuer of ours
				rest := strings.TrimPrefix(ev.Key, prefix)
				i := strings.IndexByte(rest, '/')
				if i < 0 || !st.hasIssuerKey(rest[:i]) {
					continue
				}
				m.pickUp(nameFromKey(strings.TrimSuffix(rest[i+1:], ".json")))
			}
		}
		if st.clock.sleep(st.ctx, watchRetry, false) != nil {
			return
		}
	}
}

// pickUp loads name's stored certificate when it is newer than the cached
// one (another node renewed it), or when the name is managed here and has
// none in memory.
func (m *Manager) pickUp(name string) {
	st := m.st
	cur := st.cache.get(name)
	if cur == nil && !st.managed.has(name) && !st.failures.isLapsed(name) {
		return // loaded on its first handshake, as at start-up
	}
	if cur == nil && st.cache.capacity > 0 && st.sched.has(name) {
		// Evicted here (CacheCapacity) and planned: loading it now would
		// bring every certificate the fleet renews into this node's
		// memory. Its next handshake or its plan loads the new one.
		return
	}
	ctx, cancel := context.WithTimeout(st.ctx, 30*time.Second)
	defer cancel()
	e, err := m.loadStored(ctx, name)
	if err != nil || !m.now().Before(e.notAfter) {
		return
	}
	if cur != nil && !newer(e, cur) {
		return // ours, or not newer
	}
	m.install(e, EventLoaded)
}
