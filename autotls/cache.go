package autotls

import (
	"crypto/tls"
	"encoding/hex"
	"hash/maphash"
	"math/bits"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
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

// shard is one immutable part of the read view: a table of exact hosts
// and IPs and of wildcards (a wildcard "*.example.com" under its base
// domain "example.com"), in groups of eight slots probed one group after
// the other. Each group has a control word of eight bytes, one per slot:
// zero when the slot is empty, else a tag: a bit that marks it used, the
// wildcard flag and six bits of the key's hash. A lookup hashes the name once, for the shard,
// the group and the tag together, finds the slots whose tag matches in one
// comparison of the control word (not a branch per slot: at the tables'
// load a linear probe's unpredictable length cost as much as the rest of
// the lookup), and compares their names; it reads one group, the slot
// it finds and nothing else. Entries and the keys' hashes, which only
// writers and the eviction's reference bit need, are kept apart.
//
// Every shard of a view has the view's number of groups, and they follow
// the shard's header in one allocation (of the view's shardType): a lookup
// finds its group from the shard's address and the view's mask alone,
// without waiting for a load of the header (at a million names, one cache
// miss less per lookup).
type shard struct {
	meta []slotMeta // meta[8*g+k] is about group g's slot k
	mask uint64     // the number of groups - 1
	n    int
	// the groups follow (see group)
}

// shardHeader is the offset of a shard's first group.
const shardHeader = unsafe.Sizeof(shard{})

// group returns the shard's group g (g <= mask).
func (sh *shard) group(g uint64) *group {
	return (*group)(unsafe.Add(unsafe.Pointer(sh), shardHeader+uintptr(g)*unsafe.Sizeof(group{})))
}

// shardType is the type of a shard of groups groups: its header, then
// the groups, so that the collector knows their pointers.
func shardType(groups int) reflect.Type {
	t := reflect.StructOf([]reflect.StructField{
		{Name: "Meta", Type: reflect.TypeFor[[]slotMeta]()},
		{Name: "Mask", Type: reflect.TypeFor[uint64]()},
		{Name: "N", Type: reflect.TypeFor[int]()},
		{Name: "Groups", Type: reflect.ArrayOf(groups, reflect.TypeFor[group]())},
	})
	if t.Field(3).Offset != shardHeader {
		panic("autotls: shard layout")
	}
	return t
}

// slotMeta is what writers need of a slot: its entry, and its key's hash
// for copies of the shard.
type slotMeta struct {
	e *entry
	h uint64
}

// group is eight slots and their control bytes.
type group struct {
	ctrl  uint64
	slots [groupSize]slot
}

// slot is one name of a group.
type slot struct {
	name string // the key: the name, or a wildcard's base domain
	cert *tls.Certificate
}

const (
	groupSize = 8
	ctrlLSB   = 0x0101010101010101
	ctrlMSB   = 0x8080808080808080
	tagUsed   = 0x80 // set in every occupied slot's control byte
	tagWild   = 0x40 // set for a wildcard
)

// tagOf is the control byte of a key whose hash is h: bits of h that
// choose neither the shard (the top ones) nor the group (the low ones).
func tagOf(h uint64, wild bool) uint8 {
	t := tagUsed | uint8(h>>32)&0x3f
	if wild {
		t |= tagWild
	}
	return t
}

// match returns a mask of the bytes of ctrl equal to tag, as their high
// bits; it may also mark a byte that is not (a borrow from a byte that
// matches can mark the byte above it), never misses one that is. The
// comparison of the names that follows rules the false marks out: two
// different names never compare equal, whatever their tags, so the
// lookup does not check the byte again.
func match(ctrl uint64, tag uint8) uint64 {
	x := ctrl ^ (ctrlLSB * uint64(tag))
	return (x - ctrlLSB) &^ x & ctrlMSB
}

// hasEmpty reports whether a control word has an empty slot, after which
// a probe stops. It is exact: every used byte has tagUsed set.
func hasEmpty(ctrl uint64) bool { return ^ctrl&ctrlMSB != 0 }

// find returns the index (8*group+slot) of key, whose hash is h, or -1;
// mask is the view's group mask (the shard's).
func (sh *shard) find(mask, h uint64, wild bool, key string) int {
	tag := tagOf(h, wild)
	for g := h & mask; ; g = (g + 1) & mask {
		gr := sh.group(g)
		for m := match(gr.ctrl, tag); m != 0; m &= m - 1 {
			k := bits.TrailingZeros64(m) >> 3 & (groupSize - 1)
			if sameName(gr.slots[k].name, key) {
				return int(g)*groupSize + k
			}
		}
		if hasEmpty(gr.ctrl) {
			return -1
		}
	}
}

// get returns the entry of key, whose hash is h, or nil.
func (sh *shard) get(h uint64, wild bool, key string) *entry {
	if i := sh.find(sh.mask, h, wild, key); i >= 0 {
		return sh.meta[i].e
	}
	return nil
}

// each calls f for every entry, with its key's hash, its key and its
// wildcard flag.
func (sh *shard) each(f func(h uint64, key string, wild bool, e *entry)) {
	for g := uint64(0); g <= sh.mask; g++ {
		gr := sh.group(g)
		for k := range groupSize {
			if t := uint8(gr.ctrl >> (8 * k)); t != 0 {
				x := &sh.meta[int(g)*groupSize+k]
				f(x.h, gr.slots[k].name, t&tagWild != 0, x.e)
			}
		}
	}
}

// fits reports whether a shard of groups groups takes n names: at most
// seven eighths full, so that a probe always finds an empty slot.
func fits(n, groups int) bool { return n <= groups*(groupSize-1) }

// groupsFor is the fewest groups (a power of two) a shard of n names
// needs.
func groupsFor(n int) int {
	g := 1
	for !fits(n, g) {
		g *= 2
	}
	return g
}

// newShard returns an empty shard of v's size.
func (v *view) newShard() *shard {
	sh := (*shard)(reflect.New(v.shardType).UnsafePointer())
	sh.mask = v.gmask
	sh.meta = make([]slotMeta, (v.gmask+1)*groupSize)
	return sh
}

// add adds key to a shard being built; it must fit.
func (sh *shard) add(h uint64, key string, wild bool, e *entry) {
	for g := h & sh.mask; ; g = (g + 1) & sh.mask {
		gr := sh.group(g)
		if !hasEmpty(gr.ctrl) {
			continue
		}
		k := bits.TrailingZeros64(^gr.ctrl&ctrlMSB) >> 3
		gr.ctrl |= uint64(tagOf(h, wild)) << (8 * k)
		gr.slots[k] = slot{name: key, cert: e.cert}
		sh.meta[int(g)*groupSize+k] = slotMeta{e: e, h: h}
		sh.n++
		return
	}
}

// with returns a copy of sh (a shard of v) with key mapped to e (nil:
// removed), and what key was mapped to. The copy must fit (see fits).
func (v *view) with(sh *shard, h uint64, wild bool, key string, e *entry) (*shard, *entry) {
	old := sh.get(h, wild, key)
	ns := v.newShard()
	sh.each(func(kh uint64, k string, w bool, x *entry) {
		if x != old {
			ns.add(kh, k, w, x)
		}
	})
	if e != nil {
		ns.add(h, key, wild, e)
	}
	return ns, old
}

// without returns a copy of sh (a shard of v) without the entries in drop.
func (v *view) without(sh *shard, drop map[*entry]bool) *shard {
	ns := v.newShard()
	sh.each(func(kh uint64, k string, w bool, x *entry) {
		if !drop[x] {
			ns.add(kh, k, w, x)
		}
	})
	return ns
}

// view is the set of shards; a name's shard is chosen by the top bits of
// its hash (a wildcard's by its base domain's), its group by the low bits.
type view struct {
	seed      maphash.Seed
	shift     uint   // 64 - log2(len(shards))
	gmask     uint64 // the groups of every shard - 1
	shards    []atomic.Pointer[shard]
	shardType reflect.Type // of a shard of gmask+1 groups
}

// newView returns a view of n empty shards of groups groups each.
func newView(n, groups int, seed maphash.Seed) *view {
	shift := uint(64)
	for x := n; x > 1; x >>= 1 {
		shift--
	}
	v := &view{seed: seed, shift: shift, gmask: uint64(groups - 1), shards: make([]atomic.Pointer[shard], n), shardType: shardType(groups)}
	for i := range v.shards {
		v.shards[i].Store(v.newShard())
	}
	return v
}

// hash is the hash of a key. maphash.String calls the runtime's string
// hash directly; maphash.Comparable reaches the same hash through the map
// type's hasher, two calls and an indirect one more (about 2 ns of a 15 ns
// lookup at 10,000 names).
func (v *view) hash(key string) uint64 { return maphash.String(v.seed, key) }

func (v *view) index(h uint64) int { return int(h >> v.shift) }

// shard returns the shard of a key whose hash is h. h>>shift is always
// below len(shards) (there are 1<<(64-shift)), so the index is not
// checked again.
func (v *view) shard(h uint64) *shard {
	p := unsafe.Add(unsafe.Pointer(unsafe.SliceData(v.shards)), uintptr(h>>v.shift)*unsafe.Sizeof(atomic.Pointer[shard]{}))
	return (*atomic.Pointer[shard])(p).Load()
}

// Shard sizing: the view doubles its shards when they hold more than
// maxPerShard entries on average, so that an update copies one shard of a
// bounded size, whatever the number of names.
const (
	minShards   = 16
	maxPerShard = 64
)

// cache maps names to certificates.
//
// The hot path (written out in [Manager.GetCertificate], the same as
// lookupExact) loads the small set, and if there is none the view; hashes
// the name once (maphash.String); loads the name's shard through its
// atomic pointer, at an index the hash bounds; and probes the shard's
// groups, comparing the name with each slot whose tag matches (sameName,
// a word at a time) until a group with an empty slot. With at most
// smallMax names cached it compares the name with each instead of
// hashing. No lock, no allocation, no write to shared memory (with a
// capacity, a hit sets its entry's reference bit only when it is clear). Shards are immutable: an
// update (a new certificate, a renewal, an eviction) copies the one shard
// it touches, of a few dozen entries on average, and publishes it, so its
// cost does not grow with the number of names; when the shards grow too
// full on average the view doubles them, and when one shard outgrows the
// view's number of groups per shard the view doubles that number (each a
// rebuild of every shard, amortised O(1)
// per name). Writers hold mu.
//
// With a capacity, the cache evicts certificates that have not served a
// handshake for a while (CLOCK: each hit sets the entry's reference bit;
// the sweep, run when the cache is over capacity, walks the shards,
// evicting entries whose bit is clear and clearing the others'). An
// evicted certificate stays in storage and in the renewal schedule, and is
// loaded again on its next handshake or when its renewal comes due.
type cache struct {
	// The hot path reads read and capacity; the writers' fields are kept
	// off their cache line, so that a write (a put during the start-up's
	// loads, an eviction) does not evict that line from the cores serving
	// handshakes.
	_     [64]byte
	read  atomic.Pointer[view]
	small atomic.Pointer[smallSet] // every entry while there are few; else nil
	// capacity is the most entries kept; 0 means no limit (set by init
	// only).
	capacity int
	_        [64]byte

	mu      sync.Mutex
	n       int // entries in the view
	hand    int // the next shard the sweep visits
	evicted atomic.Uint64
}

func (c *cache) init(capacity int) {
	c.read.Store(newView(minShards, 1, maphash.MakeSeed()))
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

// lookupExact is lookupFast's exact part. GetCertificate has its own
// copy of it (a call fewer per handshake); a change to one is a change to
// both (TestCacheAgainstMap checks this one, TestGetCertificateFindsCached
// that one).
func (c *cache) lookupExact(host string) *tls.Certificate {
	if sm := c.small.Load(); sm != nil {
		return c.lookupSmall(sm, host, false)
	}
	v := c.read.Load()
	h := v.hash(host)
	sh := v.shard(h)
	tag := tagOf(h, false)
	for g := h & v.gmask; ; g = (g + 1) & v.gmask {
		gr := sh.group(g)
		for m := match(gr.ctrl, tag); m != 0; m &= m - 1 {
			k := bits.TrailingZeros64(m) >> 3 & (groupSize - 1)
			if s := &gr.slots[k]; sameName(s.name, host) {
				if c.capacity > 0 {
					sh.meta[int(g)*groupSize+k].e.touch() // only eviction reads the bit
				}
				return s.cert
			}
		}
		if hasEmpty(gr.ctrl) {
			return nil
		}
	}
}

// lookupWild is lookupFast's wildcard part: the certificate of the
// wildcard one label up.
func (c *cache) lookupWild(host string) *tls.Certificate {
	i := strings.IndexByte(host, '.')
	if i <= 0 || !isLabel(host[:i]) {
		return nil
	}
	base := host[i+1:]
	if sm := c.small.Load(); sm != nil {
		return c.lookupSmall(sm, base, true)
	}
	v := c.read.Load()
	h := v.hash(base)
	sh := v.shard(h)
	j := sh.find(v.gmask, h, true, base)
	if j < 0 {
		return nil
	}
	if c.capacity > 0 {
		sh.meta[j].e.touch()
	}
	return sh.group(uint64(j / groupSize)).slots[j%groupSize].cert
}

// smallMax is the most entries a cache looks up without hashing: as Go's
// maps do for up to eight keys, a server with a few names (the common
// case) compares the server name with each, its length first, which costs
// less than hashing it.
const smallMax = 8

// smallSet is every entry of a cache that holds at most smallMax: a copy
// of the view, replaced with it.
type smallSet struct {
	n     int
	slots [smallMax]smallSlot
}

type smallSlot struct {
	key  string
	wild bool
	cert *tls.Certificate
	e    *entry
}

// lookupSmall looks key up in sm.
func (c *cache) lookupSmall(sm *smallSet, key string, wild bool) *tls.Certificate {
	for i := range sm.slots[:sm.n] {
		if s := &sm.slots[i]; s.wild == wild && sameName(s.key, key) {
			if c.capacity > 0 {
				s.e.touch()
			}
			return s.cert
		}
	}
	return nil
}

// refreshSmallLocked publishes the small set of the view's entries, or
// none if they are too many. mu is held.
func (c *cache) refreshSmallLocked() {
	if c.n > smallMax {
		if c.small.Load() != nil {
			c.small.Store(nil)
		}
		return
	}
	sm := &smallSet{}
	v := c.read.Load()
	for i := range v.shards {
		v.shards[i].Load().each(func(_ uint64, k string, w bool, e *entry) {
			sm.slots[sm.n] = smallSlot{key: k, wild: w, cert: e.cert, e: e}
			sm.n++
		})
	}
	c.small.Store(sm)
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
	return v.shards[v.index(h)].Load().get(h, wild, key)
}

// replaceLocked publishes the shard of name with name mapped to e (nil:
// removed) and returns what it replaced. mu is held.
func (c *cache) replaceLocked(name string, e *entry) (old *entry) {
	key, wild := split(name)
	v := c.read.Load()
	h := v.hash(key)
	i := v.index(h)
	sh := v.shards[i].Load()
	if e == nil && sh.get(h, wild, key) == nil {
		return nil
	}
	if e != nil && !fits(sh.n+1, int(v.gmask+1)) && sh.get(h, wild, key) == nil {
		// Every shard of a view has as many groups: a shard that outgrows
		// them doubles them all.
		v = c.rebuildLocked(len(v.shards), 2*int(v.gmask+1))
		i = v.index(h)
		sh = v.shards[i].Load()
	}
	ns, old := v.with(sh, h, wild, key, e)
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
	c.refreshSmallLocked()
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
	c.refreshSmallLocked()
	return true
}

// remove deletes e if it is still the entry for its name.
func (c *cache) remove(e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.get(e.name) == e {
		c.replaceLocked(e.name, nil)
		c.refreshSmallLocked()
	}
}

// growLocked doubles the shards when they are too full on average.
func (c *cache) growLocked() {
	if v := c.read.Load(); c.n > len(v.shards)*maxPerShard {
		c.rebuildLocked(len(v.shards)*2, 1)
	}
}

// rebuildLocked publishes a copy of the view with n shards of at least
// groups groups each (as many as the fullest shard needs), and returns
// it. The hashes stay (the seed is kept); each name moves to the shard
// the top bits of its hash choose.
func (c *cache) rebuildLocked(n, groups int) *view {
	v := c.read.Load()
	type item struct {
		h    uint64
		key  string
		wild bool
		e    *entry
	}
	parts := make([][]item, n)
	shift := 64 - uint(bits.TrailingZeros(uint(n))) // n is a power of two; newView's shift
	for i := range v.shards {
		v.shards[i].Load().each(func(h uint64, k string, w bool, e *entry) {
			p := &parts[h>>shift]
			*p = append(*p, item{h, k, w, e})
		})
	}
	for _, p := range parts {
		groups = max(groups, groupsFor(len(p)))
	}
	nv := newView(n, groups, v.seed)
	for i, p := range parts {
		sh := nv.shards[i].Load()
		for _, x := range p {
			sh.add(x.h, x.key, x.wild, x.e)
		}
	}
	c.read.Store(nv)
	c.hand = 0
	return nv
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
		var drop map[*entry]bool
		sh.each(func(_ uint64, _ string, _ bool, e *entry) {
			if len(drop) < over && evictable(e, keep) {
				if drop == nil {
					drop = map[*entry]bool{}
				}
				drop[e] = true
			}
		})
		if len(drop) == 0 {
			continue
		}
		c.n -= len(drop)
		c.evicted.Add(uint64(len(drop)))
		v.shards[i].Store(v.without(sh, drop))
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
		v.shards[i].Load().each(func(_ uint64, _ string, _ bool, e *entry) { out = append(out, e) })
	}
	return out
}

// size returns the number of cached entries.
func (c *cache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
