package autotls

import (
	"crypto/tls"
	"encoding/hex"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// entry is one cached certificate with what its lifecycle needs. Entries are
// not modified once cached, except for ref; a renewal caches a new entry.
type entry struct {
	// ref is the CLOCK reference bit, set (atomically) by every handshake
	// the entry serves and cleared by the eviction sweep. It comes first,
	// on the cache line of cert, which the hot path reads with it.
	ref uint32
	entryData
}

// entryData is an entry's content, copied whole by [entry.with].
type entryData struct {
	name      string // managed name: host, "*.domain" or IP
	cert      *tls.Certificate
	notBefore time.Time
	notAfter  time.Time
	renewAt   time.Time
	reason    string // why renewAt: ReasonSchedule, ReasonARI, ReasonARIPast
	ari       *ariState
	ariPoll   time.Time // next ARI poll; zero: none planned
	account   string    // URL of the account that obtained it; "" unknown
	iss       *issuer   // the issuer it came from
	// unstored is the encoded value when storing it failed: it is served
	// from memory and its Store retried until it succeeds. Such an entry
	// is never evicted.
	unstored []byte
}

// serial returns the certificate's serial number in hex.
func (e *entry) serial() string { return hex.EncodeToString(e.cert.Leaf.SerialNumber.Bytes()) }

// ariDue reports whether an ARI poll is due.
func (e *entry) ariDue(now time.Time) bool { return !e.ariPoll.IsZero() && !now.Before(e.ariPoll) }

// with returns a copy of e, changed by f; cached entries are never
// modified in place.
func (e *entry) with(f func(*entry)) *entry {
	c := &entry{entryData: e.entryData}
	f(c)
	return c
}

// touch sets the reference bit, writing only when it is not set yet so
// that hits on a hot entry do not bounce its cache line between cores.
func (e *entry) touch() {
	if atomic.LoadUint32(&e.ref) == 0 {
		atomic.StoreUint32(&e.ref, 1)
	}
}

// shard is one immutable part of the read view: exact hosts and IPs, and
// wildcards under their base domain ("*.example.com" under "example.com").
type shard struct {
	exact map[string]*entry
	wild  map[string]*entry
}

// view is the set of shards; a name's shard is chosen by its hash (a
// wildcard's by its base domain's).
type view struct {
	seed   maphash.Seed
	mask   uint64
	shards []atomic.Pointer[shard]
}

func newView(n int) *view {
	v := &view{seed: maphash.MakeSeed(), mask: uint64(n - 1), shards: make([]atomic.Pointer[shard], n)}
	for i := range v.shards {
		v.shards[i].Store(&shard{exact: map[string]*entry{}, wild: map[string]*entry{}})
	}
	return v
}

func (v *view) index(key string) int { return int(maphash.String(v.seed, key) & v.mask) }

// Shard sizing: the view doubles its shards when they hold more than
// maxPerShard entries on average, so that an update copies one shard of a
// bounded size, whatever the number of names.
const (
	minShards   = 16
	maxPerShard = 64
)

// cache maps names to certificates.
//
// The hot path loads the view and one shard through atomic pointers and
// looks the name up in the shard's map: no lock, no allocation. Shards are
// immutable: an update (a new certificate, a renewal, an eviction) copies
// the one shard it touches, of at most a few dozen entries on average, and
// publishes it, so its cost does not grow with the number of names; when
// the shards grow too full the view doubles them (a rebuild of every
// shard, amortised O(1) per name). Writers hold mu.
//
// With a capacity, the cache evicts certificates that have not served a
// handshake for a while (CLOCK: each hit sets the entry's reference bit;
// the sweep, run when the cache is over capacity, walks the shards,
// evicting entries whose bit is clear and clearing the others'). An
// evicted certificate stays in storage and in the renewal schedule, and is
// loaded again on its next handshake or when its renewal comes due.
type cache struct {
	read atomic.Pointer[view]

	mu       sync.Mutex
	n        int // entries in the view
	capacity int // most entries kept; 0 means no limit
	hand     int // the next shard the sweep visits
	evicted  atomic.Uint64
}

func (c *cache) init(capacity int) {
	c.read.Store(newView(minShards))
	c.capacity = max(capacity, 0)
}

// lookupFast returns the certificate for an SNI value as sent, exact
// first, then a wildcard one label up. A hit implies the name is in normal
// form, since only normalised names are cached. It does not allocate.
func (c *cache) lookupFast(host string) *tls.Certificate {
	if cert := c.lookupExact(host); cert != nil {
		return cert
	}
	return c.lookupWild(host)
}

// lookupExact is lookupFast's exact part, small enough to be inlined into
// GetCertificate.
func (c *cache) lookupExact(host string) *tls.Certificate {
	v := c.read.Load()
	if e := v.shards[v.index(host)].Load().exact[host]; e != nil {
		e.touch()
		return e.cert
	}
	return nil
}

// lookupWild is lookupFast's wildcard part: the certificate of the
// wildcard one label up.
func (c *cache) lookupWild(host string) *tls.Certificate {
	v := c.read.Load()
	i := strings.IndexByte(host, '.')
	if i <= 0 || !isLabel(host[:i]) {
		return nil
	}
	base := host[i+1:]
	if e := v.shards[v.index(base)].Load().wild[base]; e != nil {
		e.touch()
		return e.cert
	}
	return nil
}

// isLabel reports whether s is a lower-case LDH label.
func isLabel(s string) bool {
	if len(s) == 0 || len(s) > maxLabelLen || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// lookup is lookupFast for a normalised host: every cached entry is in the
// view.
func (c *cache) lookup(host string) *tls.Certificate { return c.lookupFast(host) }

// split returns the map key and the wildcard flag of a managed name.
func split(name string) (key string, wild bool) {
	if base, ok := strings.CutPrefix(name, "*."); ok {
		return base, true
	}
	return name, false
}

// get returns the entry cached under a managed name, or nil. It does not
// lock and does not count as a use.
func (c *cache) get(name string) *entry {
	key, wild := split(name)
	v := c.read.Load()
	sh := v.shards[v.index(key)].Load()
	if wild {
		return sh.wild[key]
	}
	return sh.exact[key]
}

// replaceLocked publishes the shard of name with name mapped to e (nil:
// removed) and returns what it replaced. mu is held.
func (c *cache) replaceLocked(name string, e *entry) (old *entry) {
	key, wild := split(name)
	v := c.read.Load()
	i := v.index(key)
	sh := v.shards[i].Load()
	m := sh.exact
	if wild {
		m = sh.wild
	}
	old = m[key]
	if old == nil && e == nil {
		return nil
	}
	nm := make(map[string]*entry, len(m)+1)
	for k, x := range m {
		nm[k] = x
	}
	if e == nil {
		delete(nm, key)
	} else {
		nm[key] = e
	}
	ns := &shard{exact: sh.exact, wild: sh.wild}
	if wild {
		ns.wild = nm
	} else {
		ns.exact = nm
	}
	v.shards[i].Store(ns)
	switch {
	case old == nil:
		c.n++
	case e == nil:
		c.n--
	}
	return old
}

// put caches e, replacing any entry of the same name, and evicts others
// if the cache is over capacity.
func (c *cache) put(e *entry) {
	atomic.StoreUint32(&e.ref, 1) // a new entry survives one sweep
	c.mu.Lock()
	defer c.mu.Unlock()
	c.replaceLocked(e.name, e)
	c.growLocked()
	c.sweepLocked(e)
}

// swap replaces old by e if old is still the entry for its name, and
// reports whether it did.
func (c *cache) swap(old, e *entry) bool {
	if c.get(e.name) != old {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.get(e.name) != old {
		return false
	}
	atomic.StoreUint32(&e.ref, atomic.LoadUint32(&old.ref))
	c.replaceLocked(e.name, e)
	return true
}

// remove deletes e if it is still the entry for its name.
func (c *cache) remove(e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.get(e.name) == e {
		c.replaceLocked(e.name, nil)
	}
}

// growLocked doubles the shards when they are too full on average.
func (c *cache) growLocked() {
	v := c.read.Load()
	if c.n <= len(v.shards)*maxPerShard {
		return
	}
	nv := newView(len(v.shards) * 2)
	parts := make([]shard, len(nv.shards))
	for i := range parts {
		parts[i] = shard{exact: make(map[string]*entry, maxPerShard/2), wild: map[string]*entry{}}
	}
	for i := range v.shards {
		sh := v.shards[i].Load()
		for k, e := range sh.exact {
			parts[nv.index(k)].exact[k] = e
		}
		for k, e := range sh.wild {
			parts[nv.index(k)].wild[k] = e
		}
	}
	for i := range parts {
		nv.shards[i].Store(&parts[i])
	}
	c.read.Store(nv)
	c.hand = 0
}

// sweepLocked evicts entries until the cache is within its capacity,
// keeping keep (the entry just cached) and entries whose Store is pending.
// Each shard visited is copied once, whatever it evicts.
func (c *cache) sweepLocked(keep *entry) {
	if c.capacity <= 0 || c.n <= c.capacity {
		return
	}
	v := c.read.Load()
	// Two full turns at most: the first may only clear reference bits.
	for visited := 0; c.n > c.capacity && visited < 2*len(v.shards); visited++ {
		i := c.hand % len(v.shards)
		c.hand = i + 1
		sh := v.shards[i].Load()
		var drop []string
		var dropWild []string
		for k, e := range sh.exact {
			if evictable(e, keep) {
				drop = append(drop, k)
			}
		}
		for k, e := range sh.wild {
			if evictable(e, keep) {
				dropWild = append(dropWild, k)
			}
		}
		if len(drop)+len(dropWild) == 0 {
			continue
		}
		// Evict no more than needed: the rest keep their bit cleared.
		over := c.n - c.capacity
		ns := &shard{exact: sh.exact, wild: sh.wild}
		if n := min(len(drop), over); n > 0 {
			ns.exact = without(sh.exact, drop[:n])
			over -= n
			c.n -= n
			c.evicted.Add(uint64(n))
		}
		if n := min(len(dropWild), over); n > 0 {
			ns.wild = without(sh.wild, dropWild[:n])
			c.n -= n
			c.evicted.Add(uint64(n))
		}
		v.shards[i].Store(ns)
	}
}

// evictable clears e's reference bit and reports whether it was clear
// already (so e may go): never for keep or an entry whose Store is
// pending.
func evictable(e, keep *entry) bool {
	if e == keep || e.unstored != nil {
		return false
	}
	if atomic.LoadUint32(&e.ref) != 0 {
		atomic.StoreUint32(&e.ref, 0)
		return false
	}
	return true
}

// without returns a copy of m without keys.
func without(m map[string]*entry, keys []string) map[string]*entry {
	nm := make(map[string]*entry, len(m)-len(keys))
	for k, e := range m {
		nm[k] = e
	}
	for _, k := range keys {
		delete(nm, k)
	}
	return nm
}

// all returns every cached entry.
func (c *cache) all() []*entry {
	v := c.read.Load()
	out := make([]*entry, 0, c.size())
	for i := range v.shards {
		sh := v.shards[i].Load()
		for _, e := range sh.exact {
			out = append(out, e)
		}
		for _, e := range sh.wild {
			out = append(out, e)
		}
	}
	return out
}

// size returns the number of cached entries.
func (c *cache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
