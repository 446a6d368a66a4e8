package autotls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math/big"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/tlsmint/tlsmint/storage"
)

// benchEntries returns n entries with distinct names sharing one
// certificate: the cache's own costs, without the certificates'.
func benchEntries(n int) []*entry {
	cert := &tls.Certificate{Leaf: &x509.Certificate{SerialNumber: big.NewInt(1)}}
	out := make([]*entry, n)
	for i := range out {
		out[i] = &entry{entryData: entryData{name: fmt.Sprintf("host%d.bench.example.com", i), cert: cert}}
	}
	return out
}

func filledCache(n int) (*cache, []*entry) {
	var c cache
	c.init(0)
	es := benchEntries(n)
	for _, e := range es {
		c.put(e)
	}
	return &c, es
}

// BenchmarkCacheHit is the hot path's lookup with 10,000 and 1,000,000
// names cached, against a bare map of the same names, in the same run.
func BenchmarkCacheHit(b *testing.B) {
	for _, n := range []int{1, 10_000, 1_000_000} {
		if testing.Short() && n > 10_000 {
			continue
		}
		c, es := filledCache(n)
		names := make([]string, n)
		bare := make(map[string]*tls.Certificate, n)
		for i, e := range es {
			names[i] = strings.Clone(e.name) // as a client sends it
			bare[e.name] = e.cert
		}
		b.Run(fmt.Sprintf("names=%d/impl=cache", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if c.lookupFast(names[i]) == nil {
					b.Fatal("miss")
				}
				if i++; i == n {
					i = 0
				}
			}
		})
		b.Run(fmt.Sprintf("names=%d/impl=map", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if bare[names[i]] == nil {
					b.Fatal("miss")
				}
				if i++; i == n {
					i = 0
				}
			}
		})
	}
}

// BenchmarkCacheSwap is one renewal's update of the read view (a new entry
// replacing a cached one) at 10,000, 100,000 and 1,000,000 names.
func BenchmarkCacheSwap(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		c, es := filledCache(n)
		b.Run(fmt.Sprintf("names=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				old := es[i]
				e := old.with(func(*entry) {})
				if !c.swap(old, e) {
					b.Fatal("not swapped")
				}
				es[i] = e
				if i++; i == n {
					i = 0
				}
			}
		})
	}
}

// BenchmarkCacheEvict is a cache at capacity taking in new names: each
// put evicts one (the sweep's cost, amortised).
func BenchmarkCacheEvict(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		var c cache
		c.init(n)
		es := benchEntries(2 * n)
		for _, e := range es[:n] {
			c.put(e)
		}
		b.Run(fmt.Sprintf("capacity=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				e := es[n+i%n]
				if c.get(e.name) == nil {
					c.put(e)
				} else {
					c.put(es[i%n])
				}
				i++
			}
			if c.size() > n {
				b.Fatalf("%d entries, capacity %d", c.size(), n)
			}
		})
	}
}

// BenchmarkScheduleMemory is what a managed name costs when its
// certificate is not in memory: its plan in the renewal schedule (heap
// item and map entry, the name's bytes included).
func BenchmarkScheduleMemory(b *testing.B) {
	const n = 1_000_000
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("host%d.bench.example.com", i)
	}
	for b.Loop() {
		m := &Manager{}
		st := m.state()
		st.sched.started = true // no loop: the plans alone
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		at := time.Now()
		for i, name := range names {
			st.sched.at(m, name, at.Add(time.Duration(i)*time.Second))
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/n, "B/name")
		b.ReportMetric(float64(len(names[0])), "name-bytes")
		runtime.KeepAlive(m)
	}
}

// BenchmarkGetCertificateHit is GetCertificate on a cache hit with 1,
// 10,000 and 1,000,000 names cached (simulated: distinct names sharing one
// certificate), against a bare map lookup of the same names in the same
// run, each sequential (mode=seq) and from every core at once
// (mode=parallel, b.RunParallel: each goroutine walks the names from its
// own starting point). Each goroutine asks with one ClientHelloInfo whose
// ServerName it sets before each call: in a handshake crypto/tls has just
// built the hello, so it is in the core's cache, and only the names and
// the tables compete for it. The server names are copies of the cached
// ones, as those a client sends are, so that no lookup is answered by
// comparing two pointers to the same bytes. In mode=chained each name
// depends on the previous hit's result, so that the processor cannot
// overlap one lookup's cache misses with the next's: the latency of one
// hit, where mode=seq is their throughput.
func BenchmarkGetCertificateHit(b *testing.B) {
	for _, n := range []int{1, 10_000, 1_000_000} {
		if testing.Short() && n > 10_000 {
			continue
		}
		m := &Manager{Hosts: HostWhitelist("example.com")}
		st := m.state()
		es := benchEntries(n)
		names := make([]string, n) // the server names as a client sends them
		bare := make(map[string]*tls.Certificate, n)
		for i, e := range es {
			st.cache.put(e)
			names[i] = strings.Clone(e.name)
			bare[e.name] = e.cert
		}
		impls := []struct {
			name string
			get  func(*tls.ClientHelloInfo) *tls.Certificate
		}{
			{"manager", func(h *tls.ClientHelloInfo) *tls.Certificate { c, _ := m.GetCertificate(h); return c }},
			{"map", func(h *tls.ClientHelloInfo) *tls.Certificate { return bare[h.ServerName] }},
		}
		newHello := func() *tls.ClientHelloInfo {
			return &tls.ClientHelloInfo{SupportedProtos: []string{"h2", "http/1.1"}}
		}
		for _, impl := range impls {
			b.Run(fmt.Sprintf("names=%d/mode=seq/impl=%s", n, impl.name), func(b *testing.B) {
				b.ReportAllocs()
				hello := newHello()
				i := 0
				for b.Loop() {
					hello.ServerName = names[i]
					if impl.get(hello) == nil {
						b.Fatal("miss")
					}
					if i++; i == n {
						i = 0
					}
				}
			})
		}
		for _, impl := range impls {
			b.Run(fmt.Sprintf("names=%d/mode=chained/impl=%s", n, impl.name), func(b *testing.B) {
				b.ReportAllocs()
				hello := newHello()
				i := 0
				for b.Loop() {
					hello.ServerName = names[i]
					c := impl.get(hello)
					if c == nil {
						b.Fatal("miss")
					}
					// The next name depends on this hit's certificate
					// (len is 0): one lookup at a time, its latency.
					if i += 1 + len(c.Certificate); i >= n {
						i = 0
					}
				}
			})
		}
		for _, impl := range impls {
			b.Run(fmt.Sprintf("names=%d/mode=parallel/impl=%s", n, impl.name), func(b *testing.B) {
				b.ReportAllocs()
				var start atomic.Int64
				b.RunParallel(func(pb *testing.PB) {
					hello := newHello()
					i := int(start.Add(int64(n/7+1))) % n
					for pb.Next() {
						hello.ServerName = names[i]
						if impl.get(hello) == nil {
							panic("miss")
						}
						if i++; i == n {
							i = 0
						}
					}
				})
			})
		}
		m.Close()
	}
}

// BenchmarkScheduleFromIndex is the background start-up with 1,000,000
// names in the schedule index (in a memory store; no certificate is
// loaded): the time until every name is planned, and the heap the plans
// take per name.
func BenchmarkScheduleFromIndex(b *testing.B) {
	const n = 1_000_000
	store := storage.NewMemory()
	dir := "https://ca.invalid/directory"
	iss := &issuer{url: dir, key: issuerKey(dir)}
	buckets := make([]map[string]indexRecord, indexBuckets)
	now := time.Now()
	for i := range n {
		name := fmt.Sprintf("host%d.bench.example.com", i)
		bk := bucketOf(name)
		if buckets[bk] == nil {
			buckets[bk] = map[string]indexRecord{}
		}
		buckets[bk][name] = indexRecord{now.Add(90 * 24 * time.Hour).Unix(), now.Add(time.Hour + time.Duration(i%(60*24*3600))*time.Second).Unix()}
	}
	for bk, names := range buckets {
		v, _ := json.Marshal(indexValue{Version: indexVersion, Names: names})
		if err := store.Store(context.Background(), (indexRef{iss, bk}).key(), v); err != nil {
			b.Fatal(err)
		}
	}
	buckets = nil
	for b.Loop() {
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		m := &Manager{Issuers: []Issuer{{DirectoryURL: dir}}, Storage: store, Hosts: HostWhitelist("example.com"), AcceptTOS: true}
		m.state().fastDiscovery = true
		start := time.Now()
		m.TLSConfig()
		<-m.state().discovered
		took := time.Since(start)
		if got := m.state().sched.planned(); got != n {
			b.Fatalf("%d planned, want %d", got, n)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		b.ReportMetric(float64(took.Milliseconds()), "ms-to-schedule")
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/n, "B/name")
		m.Close()
	}
}

// layout returns what the view's tables take: the slots of every shard,
// the names in them, and the bytes of the groups (what a lookup reads),
// of the slots' metadata and of the array of shard pointers.
func (v *view) layout() (slots, names int, groupBytes, metaBytes, arrayBytes uintptr) {
	for i := range v.shards {
		sh := v.shards[i].Load()
		slots += int(sh.mask+1) * groupSize
		names += sh.n
		groupBytes += uintptr(sh.mask+1) * unsafe.Sizeof(group{})
		metaBytes += uintptr(len(sh.meta)) * unsafe.Sizeof(slotMeta{})
	}
	return slots, names, groupBytes, metaBytes, uintptr(len(v.shards)) * unsafe.Sizeof(atomic.Pointer[shard]{})
}

// heapOf returns the bytes that build allocates and keeps.
func heapOf(build func() any) (uint64, any) {
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	x := build()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	return m1.HeapAlloc - m0.HeapAlloc, x
}

// BenchmarkCacheLayout reports the memory a lookup walks at 10,000 and
// 1,000,000 names: the view's groups per name and their load (names per
// slot), its shard pointers, and the heap a bare map of the same names
// takes (sized from the start, as the hit benchmarks make it, and grown
// one name at a time), the names' bytes shared.
func BenchmarkCacheLayout(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		c, es := filledCache(n)
		b.Run(fmt.Sprintf("names=%d", n), func(b *testing.B) {
			for b.Loop() {
				v := c.read.Load()
				slots, names, gb, mb, ab := v.layout()
				if names != n {
					b.Fatalf("%d names in the view, want %d", names, n)
				}
				sized, m1 := heapOf(func() any {
					m := make(map[string]*tls.Certificate, n)
					for _, e := range es {
						m[e.name] = e.cert
					}
					return m
				})
				grown, m2 := heapOf(func() any {
					m := map[string]*tls.Certificate{}
					for _, e := range es {
						m[e.name] = e.cert
					}
					return m
				})
				runtime.KeepAlive(m1)
				runtime.KeepAlive(m2)
				b.ReportMetric(float64(len(v.shards)), "shards")
				b.ReportMetric(float64(v.gmask+1), "groups/shard")
				b.ReportMetric(float64(names)/float64(slots), "load")
				b.ReportMetric(float64(gb)/float64(n), "group-B/name")
				b.ReportMetric(float64(mb)/float64(n), "meta-B/name")
				b.ReportMetric(float64(ab)/1024, "shard-array-KiB")
				b.ReportMetric(float64(sized)/float64(n), "map-sized-B/name")
				b.ReportMetric(float64(grown)/float64(n), "map-grown-B/name")
			}
		})
	}
}
