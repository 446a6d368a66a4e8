package autotls

import (
	"crypto/tls"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// entry is one cached certificate.
type entry struct {
	name     string // managed name: host, "*.domain" or IP
	cert     *tls.Certificate
	notAfter time.Time
	renewAt  time.Time
	meta     *storedCert
	// expired is set by the renewal loop once notAfter has passed, so the
	// hot path need not read the clock.
	expired atomic.Bool
}

// cache maps names to certificates. Reads take a read lock for a map
// lookup only; nothing holds the lock across I/O.
type cache struct {
	mu    sync.RWMutex
	exact map[string]*entry
	wild  map[string]*entry // "*.example.com" under "example.com"
}

func (c *cache) init() {
	c.exact = make(map[string]*entry)
	c.wild = make(map[string]*entry)
}

// lookup returns the certificate for a normalised host name, exact first,
// then a wildcard one label up. It does not allocate.
func (c *cache) lookup(host string) *tls.Certificate {
	c.mu.RLock()
	e := c.exact[host]
	if e == nil {
		if i := strings.IndexByte(host, '.'); i > 0 {
			e = c.wild[host[i+1:]]
		}
	}
	c.mu.RUnlock()
	if e == nil || e.expired.Load() {
		return nil
	}
	return e.cert
}

// get returns the entry stored under a managed name.
func (c *cache) get(name string) *entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if base, ok := strings.CutPrefix(name, "*."); ok {
		return c.wild[base]
	}
	return c.exact[name]
}

func (c *cache) put(e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if base, ok := strings.CutPrefix(e.name, "*."); ok {
		c.wild[base] = e
		return
	}
	c.exact[e.name] = e
}

// remove deletes e if it is still the entry for its name.
func (c *cache) remove(e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, key := c.exact, e.name
	if base, ok := strings.CutPrefix(e.name, "*."); ok {
		m, key = c.wild, base
	}
	if m[key] == e {
		delete(m, key)
	}
}

func (c *cache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.exact) + len(c.wild)
}
