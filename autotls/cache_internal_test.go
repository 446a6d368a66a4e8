package autotls

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"sync/atomic"
	"testing"
)

// TestCacheAgainstMap runs random puts, swaps and removals of exact names
// and wildcards, many sharing a base domain with an exact name ("a.b" and
// "*.a.b" are different names with the same key), through enough names
// that the view doubles its shards several times (bases=3000), or around
// the size where look-ups stop hashing (bases=6: up to 12 names), and
// checks every look-up against a map of what should be cached.
func TestCacheAgainstMap(t *testing.T) {
	for _, bases := range []int{3000, 6} {
		t.Run(fmt.Sprintf("bases=%d", bases), func(t *testing.T) { testCacheAgainstMap(t, bases) })
	}
}

func testCacheAgainstMap(t *testing.T, bases int) {
	var c cache
	c.init(0)
	want := map[string]*entry{}
	r := mrand.New(mrand.NewPCG(1, 2))
	name := func() string {
		base := fmt.Sprintf("h%d.example.com", r.IntN(bases))
		if r.IntN(3) == 0 {
			return "*." + base
		}
		return base
	}
	newEntry := func(n string) *entry {
		cert := &tls.Certificate{Leaf: &x509.Certificate{SerialNumber: big.NewInt(r.Int64())}}
		return &entry{entryData: entryData{name: n, cert: cert}}
	}
	check := func(step int) {
		t.Helper()
		if got := c.size(); got != len(want) {
			t.Fatalf("step %d: size %d, want %d", step, got, len(want))
		}
		for n, e := range want {
			if got := c.get(n); got != e {
				t.Fatalf("step %d: get(%q) = %p, want %p", step, n, got, e)
			}
		}
	}
	for step := range 20000 {
		n := name()
		switch op := r.IntN(10); {
		case op < 6:
			e := newEntry(n)
			c.put(e)
			want[n] = e
		case op < 8:
			old := c.get(n)
			if old == nil {
				continue
			}
			e := newEntry(n)
			if !c.swap(old, e) {
				t.Fatalf("step %d: swap(%q) refused", step, n)
			}
			if c.swap(old, newEntry(n)) {
				t.Fatalf("step %d: swap(%q) of a replaced entry accepted", step, n)
			}
			want[n] = e
		default:
			if e := c.get(n); e != nil {
				c.remove(e)
				delete(want, n)
			}
		}
		// What a handshake finds for a name and for one label below it.
		key, wild := split(n)
		exact, under := c.lookupExact(key), c.lookupWild("x."+key)
		if e := want[key]; (e == nil) != (exact == nil) || e != nil && exact != e.cert {
			t.Fatalf("step %d: lookupExact(%q) = %p, want %v", step, key, exact, e)
		}
		if e := want["*."+key]; (e == nil) != (under == nil) || e != nil && under != e.cert {
			t.Fatalf("step %d: lookupWild(x.%s) = %p, want %v (wild %v)", step, key, under, e, wild)
		}
		if small := c.small.Load() != nil; small != (len(want) <= smallMax) {
			t.Fatalf("step %d: small set in use: %v with %d names", step, small, len(want))
		}
		if step%2000 == 0 {
			check(step)
		}
	}
	check(-1)
	if got, want := len(c.all()), len(want); got != want {
		t.Errorf("all: %d entries, want %d", got, want)
	}
	if v := c.read.Load(); bases > 1000 && len(v.shards) <= minShards {
		t.Errorf("%d shards for %d names: the view never grew", len(v.shards), len(want))
	}
	if small := c.small.Load() != nil; small != (len(want) <= smallMax) {
		t.Errorf("small set in use: %v with %d names", small, len(want))
	}
}

// TestCacheShardsShareGroups: every shard of the view has the view's
// number of groups (a lookup finds its group from the view's mask without
// reading the shard's header), a shard that outgrows them doubles them for
// every shard while the shards stay as many, and every name is still found
// after each put and removal.
func TestCacheShardsShareGroups(t *testing.T) {
	var c cache
	c.init(0)
	es := benchEntries(3000)
	doubled := false
	check := func(i int) {
		t.Helper()
		v := c.read.Load()
		for j := range v.shards {
			sh := v.shards[j].Load()
			if sh.mask != v.gmask || len(sh.meta) != int(v.gmask+1)*groupSize || !fits(sh.n, int(v.gmask+1)) {
				t.Fatalf("put %d: shard %d: mask %d, %d metas, %d names; the view's mask %d", i, j, sh.mask, len(sh.meta), sh.n, v.gmask)
			}
		}
		for _, e := range es[:i+1] {
			if got := c.lookupExact(e.name); got != e.cert {
				t.Fatalf("put %d: lookupExact(%q) = %p, want %p", i, e.name, got, e.cert)
			}
		}
	}
	for i, e := range es {
		before := c.read.Load()
		c.put(e)
		if v := c.read.Load(); len(v.shards) == len(before.shards) && v.gmask > before.gmask {
			doubled = true
		}
		if i < 200 || i%100 == 0 {
			check(i)
		}
	}
	check(len(es) - 1)
	if !doubled {
		t.Error("no shard outgrew the view's groups: the doubling was not exercised")
	}
	for i, e := range es {
		if i%2 == 0 {
			c.remove(e)
		}
	}
	for i, e := range es {
		if got := c.lookupExact(e.name); (i%2 == 0) != (got == nil) {
			t.Fatalf("after removals: lookupExact(%q) = %p", e.name, got)
		}
	}
}

// TestCacheEvictsToCapacity: puts beyond the capacity keep the cache at
// it, never evict the entry just put, and count what they evict (which
// entries go is TestEvictionKeepsHotNames's).
func TestCacheEvictsToCapacity(t *testing.T) {
	var c cache
	c.init(100)
	es := benchEntries(1000)
	for i, e := range es {
		c.put(e)
		if c.size() > 100 {
			t.Fatalf("after %d puts: %d cached, capacity 100", i+1, c.size())
		}
		if c.get(e.name) != e {
			t.Fatalf("the entry just put (%s) was evicted", e.name)
		}
	}
	if got := c.evicted.Load(); got != 900 {
		t.Errorf("evicted %d, want 900", got)
	}
}

// TestGetCertificateHitAllocs: a cache hit allocates nothing, exact or
// wildcard, with a capacity (which sets reference bits) or without.
func TestGetCertificateHitAllocs(t *testing.T) {
	for _, capacity := range []int{0, 10} {
		m := &Manager{Hosts: HostWhitelist("example.com"), CacheCapacity: capacity}
		st := m.state()
		es := benchEntries(3)
		es[2].name = "*.wild.example.com"
		for _, e := range es {
			st.cache.put(e)
		}
		for _, sni := range []string{es[0].name, "a.wild.example.com"} {
			hello := &tls.ClientHelloInfo{ServerName: sni}
			if allocs := testing.AllocsPerRun(100, func() {
				if c, err := m.GetCertificate(hello); c == nil || err != nil {
					t.Fatalf("GetCertificate(%s): %v", sni, err)
				}
			}); allocs != 0 {
				t.Errorf("capacity %d, %s: %v allocations per hit, want 0", capacity, sni, allocs)
			}
		}
		m.Close()
	}
}

// TestGetCertificateFindsCached: GetCertificate, which writes the cache's
// exact lookup out, serves every cached name its own certificate, a name
// one label below a wildcard the wildcard's, and no other name a cached
// certificate, with few names (the small set) and with enough that the
// view has grown; with a capacity, a hit sets the entry's reference bit.
func TestGetCertificateFindsCached(t *testing.T) {
	for _, tc := range []struct {
		names, capacity int
	}{{5, 0}, {3000, 0}, {3000, 5000}} {
		t.Run(fmt.Sprintf("names=%d/capacity=%d", tc.names, tc.capacity), func(t *testing.T) {
			m := &Manager{Hosts: HostWhitelist("example.com"), CacheCapacity: tc.capacity}
			defer m.Close()
			st := m.state()
			es := make([]*entry, tc.names)
			for i := range es {
				name := fmt.Sprintf("h%d.example.org", i)
				if i%5 == 4 {
					name = "*.w" + name
				}
				es[i] = &entry{entryData: entryData{name: name, cert: &tls.Certificate{Leaf: &x509.Certificate{SerialNumber: big.NewInt(int64(i))}}}}
				st.cache.put(es[i])
			}
			for _, e := range es {
				atomic.StoreUint32(&e.ref, 0)
			}
			for i, e := range es {
				sni := e.name
				if key, wild := split(e.name); wild {
					sni = "x." + key
				}
				got, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: sni})
				if err != nil || got != e.cert {
					t.Fatalf("GetCertificate(%s) = %p, %v; want %p", sni, got, err, e.cert)
				}
				if ref := atomic.LoadUint32(&e.ref); (ref != 0) != (tc.capacity > 0) {
					t.Errorf("%s: reference bit %d after a hit, capacity %d", e.name, ref, tc.capacity)
				}
				// The same length, one byte different: not cached, and not
				// allowed by the policy.
				other := []byte(sni)
				other[1] = 'q'
				if got, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: string(other)}); got != nil || err == nil {
					t.Fatalf("GetCertificate(%s) = %p, %v; want an error (%d: %s cached)", other, got, err, i, e.name)
				}
			}
		})
	}
}
