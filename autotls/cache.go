package autotls

import (
	"crypto/tls"
	"encoding/hex"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// entry is one cached certificate with what its lifecycle needs. Entries are
// not modified once cached; a renewal caches a new entry.
type entry struct {
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
	// from memory and its Store retried until it succeeds.
	unstored []byte
}

// serial returns the certificate's serial number in hex.
func (e *entry) serial() string { return hex.EncodeToString(e.cert.Leaf.SerialNumber.Bytes()) }

// ariDue reports whether an ARI poll is due.
func (e *entry) ariDue(now time.Time) bool { return !e.ariPoll.IsZero() && !now.Before(e.ariPoll) }

// with returns a copy of e, changed by f; cached entries are never
// modified in place.
func (e *entry) with(f func(*entry)) *entry {
	c := *e
	f(&c)
	return &c
}

// certMaps is the read-only view the hot path uses: exact hosts and IPs,
// and wildcards under their base domain ("*.example.com" under
// "example.com").
type certMaps struct {
	exact map[string]*tls.Certificate
	wild  map[string]*tls.Certificate
}

// cache maps names to certificates.
//
// The hot path loads an immutable certMaps through an atomic pointer: no
// lock, no allocation, no pointer chased beyond the map. The authoritative
// entries live in a locked map; the read view is rebuilt from it when an
// entry is replaced or removed (rare: renewals and expiries) and, for new
// entries, once enough have gathered that the rebuild pays for itself — so
// filling the cache costs amortised O(1) per entry. Until then, new
// entries are found by the slow path.
type cache struct {
	read atomic.Pointer[certMaps]

	mu      sync.Mutex
	entries map[string]*entry // by managed name
	fresh   int               // entries not yet in the read view
	misses  int               // slow-path hits since the last rebuild
}

func (c *cache) init() {
	c.read.Store(&certMaps{exact: map[string]*tls.Certificate{}, wild: map[string]*tls.Certificate{}})
	c.entries = make(map[string]*entry)
}

// lookupFast returns the certificate for an SNI value as sent, exact
// first, then a wildcard one label up. A hit implies the name is in normal
// form, since only normalised names are cached. It does not allocate.
func (c *cache) lookupFast(host string) *tls.Certificate {
	r := c.read.Load()
	if cert := r.exact[host]; cert != nil {
		return cert
	}
	i := strings.IndexByte(host, '.')
	if i <= 0 || !isLabel(host[:i]) {
		return nil
	}
	return r.wild[host[i+1:]]
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

// lookup is lookupFast plus the entries not yet in the read view, for a
// normalised host.
func (c *cache) lookup(host string) *tls.Certificate {
	if cert := c.lookupFast(host); cert != nil {
		return cert
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fresh == 0 {
		return nil
	}
	e := c.entries[host]
	if e == nil {
		if i := strings.IndexByte(host, '.'); i > 0 {
			e = c.entries["*."+host[i+1:]]
		}
	}
	if e == nil {
		return nil
	}
	// Hits here mean the read view is stale: rebuild it once it pays.
	if c.misses++; c.misses > c.fresh {
		c.rebuildLocked()
	}
	return e.cert
}

// get returns the entry cached under a managed name.
func (c *cache) get(name string) *entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[name]
}

// put caches e, replacing any entry of the same name at once.
func (c *cache) put(e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.entries[e.name]
	c.entries[e.name] = e
	if old != nil {
		if old.cert != e.cert {
			c.rebuildLocked()
		}
		// Same certificate, new metadata (an ARI poll, a Store that
		// succeeded): the read view is unchanged.
		return
	}
	if c.fresh++; c.fresh > len(c.entries)/4+16 {
		c.rebuildLocked()
	}
}

// swap replaces old by e if old is still the entry for its name, and
// reports whether it did.
func (c *cache) swap(old, e *entry) bool {
	c.mu.Lock()
	cur := c.entries[e.name]
	c.mu.Unlock()
	if cur != old {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries[e.name] != old {
		return false
	}
	c.entries[e.name] = e
	if old.cert != e.cert {
		c.rebuildLocked()
	}
	return true
}

// remove deletes e if it is still the entry for its name.
func (c *cache) remove(e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries[e.name] == e {
		delete(c.entries, e.name)
		c.rebuildLocked()
	}
}

func (c *cache) rebuildLocked() {
	nm := &certMaps{exact: make(map[string]*tls.Certificate, len(c.entries)), wild: make(map[string]*tls.Certificate)}
	for name, e := range c.entries {
		if base, ok := strings.CutPrefix(name, "*."); ok {
			nm.wild[base] = e.cert
		} else {
			nm.exact[name] = e.cert
		}
	}
	c.read.Store(nm)
	c.fresh, c.misses = 0, 0
}
