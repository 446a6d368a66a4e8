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
	// ariRenewed: the certificate replaced one that the CA's renewal
	// information (ARI) had due; see renewFloor.
	ariRenewed bool
	// floor is the earliest the certificate may be renewed, set when the
	// Manager obtained it (zero: not known); see renewFloor.
	floor time.Time
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
// wildcards under their base domain ("*.example.com" under "example.com"),
// each an open-addressing table keyed by the name's hash, so that a
// lookup hashes the name once (for the shard and the slot together).
type shard struct {
	exact, wild table
}

// table is an immutable open-addressing hash table with linear probing,
// at most three quarters full.
type table struct {
	slots []slot
	mask  uint64
	n     int
}

// slot is one name of a table; an empty slot has a nil e. cert is e.cert,
// so that a hit reads no more than the slot.
type slot struct {
	h    uint64
	name string
	e    *entry
	cert *tls.Certificate
}

// find returns the slot of name, whose hash is h, or nil.
func (t *table) find(h uint64, name string) *slot {
	if t.n == 0 {
		return nil
	}
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.e == nil {
			return nil
		}
		if s.h == h && s.name == name {
			return s
		}
	}
}

// get returns the entry of name, whose hash is h, or nil.
func (t *table) get(h uint64, name string) *entry {
	if s := t.find(h, name); s != nil {
		return s.e
	}
	return nil
}

// each calls f for every entry.
func (t *table) each(f func(name string, h uint64, e *entry)) {
	for i := range t.slots {
		if s := &t.slots[i]; s.e != nil {
			f(s.name, s.h, s.e)
		}
	}
}

// tableBuilder fills a new table of a known size.
type tableBuilder struct{ t table }

func newTable(n int) tableBuilder {
	size := 8
	for size*3 < n*4 {
		size *= 2
	}
	return tableBuilder{table{slots: make([]slot, size), mask: uint64(size - 1)}}
}

func (b *tableBuilder) add(h uint64, name string, e *entry) {
	t := &b.t
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		if t.slots[i].e == nil {
			t.slots[i] = slot{h: h, name: name, e: e, cert: e.cert}
			t.n++
			return
		}
	}
}

// with returns a copy of t with name mapped to e (nil: removed), and what
// name was mapped to.
func (t *table) with(h uint64, name string, e *entry) (table, *entry) {
	old := t.get(h, name)
	n := t.n
	switch {
	case old == nil && e != nil:
		n++
	case old != nil && e == nil:
		n--
	}
	b := newTable(n)
	t.each(func(k string, kh uint64, x *entry) {
		if k != name {
			b.add(kh, k, x)
		}
	})
	if e != nil {
		b.add(h, name, e)
	}
	return b.t, old
}

// without returns a copy of t without the names in drop.
func (t *table) without(drop map[string]bool) table {
	b := newTable(t.n - len(drop))
	t.each(func(k string, kh uint64, x *entry) {
		if !drop[k] {
			b.add(kh, k, x)
		}
	})
	return b.t
}

// view is the set of shards; a name's shard is chosen by the top bits of
// its hash (a wildcard's by its base domain's), its slot by the low bits.
type view struct {
	seed   maphash.Seed
	shift  uint // 64 - log2(len(shards))
	shards []atomic.Pointer[shard]
}

func newView(n int, seed maphash.Seed) *view {
	shift := uint(64)
	for x := n; x > 1; x >>= 1 {
		shift--
	}
	v := &view{seed: seed, shift: shift, shards: make([]atomic.Pointer[shard], n)}
	for i := range v.shards {
		v.shards[i].Store(&shard{})
	}
	return v
}

func (v *view) hash(key string) uint64 { return maphash.String(v.seed, key) }

func (v *view) index(h uint64) int { return int(h >> v.shift) }

// Shard sizing: the view doubles its shards when they hold more than
// maxPerShard entries on average, so that an update copies one shard of a
// bounded size, whatever the number of names.
const (
	minShards   = 16
	maxPerShard = 64
)

// cache maps names to certificates.
//
// The hot path hashes the name once, loads the view and the name's shard
// through atomic pointers and probes the shard's table: no lock, no
// allocation. Shards are immutable: an update (a new certificate, a
// renewal, an eviction) copies the one shard it touches, of a few dozen
// entries on average, and publishes it, so its cost does not grow with
// the number of names; when the shards grow too full the view doubles them
// (a rebuild of every shard, amortised O(1) per name). Writers hold mu.
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
	capacity int // most entries kept; 0 means no limit (set by init only)
	hand     int // the next shard the sweep visits
	evicted  atomic.Uint64
}

func (c *cache) init(capacity int) {
	c.read.Store(newView(minShards, maphash.MakeSeed()))
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
	h := v.hash(host)
	if s := v.shards[v.index(h)].Load().exact.find(h, host); s != nil {
		if c.capacity > 0 {
			s.e.touch() // only eviction reads the bit
		}
		return s.cert
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
	h := v.hash(base)
	if s := v.shards[v.index(h)].Load().wild.find(h, base); s != nil {
		if c.capacity > 0 {
			s.e.touch()
		}
		return s.cert
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
	h := v.hash(key)
	sh := v.shards[v.index(h)].Load()
	if wild {
		return sh.wild.get(h, key)
	}
	return sh.exact.get(h, key)
}

// replaceLocked publishes the shard of name with name mapped to e (nil:
// removed) and returns what it replaced. mu is held.
func (c *cache) replaceLocked(name string, e *entry) (old *entry) {
	key, wild := split(name)
	v := c.read.Load()
	h := v.hash(key)
	i := v.index(h)
	sh := v.shards[i].Load()
	t := &sh.exact
	if wild {
		t = &sh.wild
	}
	if e == nil && t.get(h, key) == nil {
		return nil
	}
	nt, old := t.with(h, key, e)
	ns := &shard{exact: sh.exact, wild: sh.wild}
	if wild {
		ns.wild = nt
	} else {
		ns.exact = nt
	}
	v.shards[i].Store(ns)
	switch {
	case old == nil && e != nil:
		c.n++
	case old != nil && e == nil:
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

// growLocked doubles the shards when they are too full on average. The
// hashes stay (the seed is kept); each name moves to the shard its next
// hash bit chooses.
func (c *cache) growLocked() {
	v := c.read.Load()
	if c.n <= len(v.shards)*maxPerShard {
		return
	}
	nv := newView(len(v.shards)*2, v.seed)
	type part struct{ exact, wild []slot }
	parts := make([]part, len(nv.shards))
	for i := range v.shards {
		sh := v.shards[i].Load()
		sh.exact.each(func(k string, h uint64, e *entry) {
			p := &parts[nv.index(h)]
			p.exact = append(p.exact, slot{h: h, name: k, e: e})
		})
		sh.wild.each(func(k string, h uint64, e *entry) {
			p := &parts[nv.index(h)]
			p.wild = append(p.wild, slot{h: h, name: k, e: e})
		})
	}
	for i, p := range parts {
		ex, wi := newTable(len(p.exact)), newTable(len(p.wild))
		for _, s := range p.exact {
			ex.add(s.h, s.name, s.e)
		}
		for _, s := range p.wild {
			wi.add(s.h, s.name, s.e)
		}
		nv.shards[i].Store(&shard{exact: ex.t, wild: wi.t})
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
		over := c.n - c.capacity
		// Evict no more than needed, and clear the bits only of the
		// entries passed before the last victim: the others keep theirs,
		// as a clock hand that stops there would leave them. (Clearing
		// every bit of the shard while evicting its first unmarked
		// entries in table order let the same slots be evicted again and
		// again while entries never served stayed.)
		pick := func(t *table) map[string]bool {
			var drop map[string]bool
			t.each(func(k string, _ uint64, e *entry) {
				if len(drop) < over && evictable(e, keep) {
					if drop == nil {
						drop = map[string]bool{}
					}
					drop[k] = true
				}
			})
			over -= len(drop)
			return drop
		}
		dropExact := pick(&sh.exact)
		dropWild := pick(&sh.wild)
		if len(dropExact)+len(dropWild) == 0 {
			continue
		}
		ns := &shard{exact: sh.exact, wild: sh.wild}
		if len(dropExact) > 0 {
			ns.exact = sh.exact.without(dropExact)
		}
		if len(dropWild) > 0 {
			ns.wild = sh.wild.without(dropWild)
		}
		n := len(dropExact) + len(dropWild)
		c.n -= n
		c.evicted.Add(uint64(n))
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

// all returns every cached entry.
func (c *cache) all() []*entry {
	v := c.read.Load()
	out := make([]*entry, 0, c.size())
	for i := range v.shards {
		sh := v.shards[i].Load()
		add := func(_ string, _ uint64, e *entry) { out = append(out, e) }
		sh.exact.each(add)
		sh.wild.each(add)
	}
	return out
}

// size returns the number of cached entries.
func (c *cache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
