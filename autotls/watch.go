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

// watch follows changes to the stored certificates when the storage
// reports them ([storage.Watcher]: PostgreSQL's LISTEN/NOTIFY, the file
// backend's polling): a certificate another node obtained or renewed is
// loaded at once instead of at this node's next scheduled check. It runs
// until the Manager closes.
func (m *Manager) watch() {
	st := m.st
	w, ok := st.store.(storage.Watcher)
	if !ok {
		return
	}
	const prefix = "certificates/"
	for st.ctx.Err() == nil {
		ch, err := w.Watch(st.ctx, prefix)
		if err != nil {
			st.log.Warn("autotls: watching storage for other nodes' certificates failed", "err", err)
		} else {
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
