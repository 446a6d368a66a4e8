package relay

import (
	"crypto/rand"
	"encoding/base64"
	"sync"
)

// DefaultMaxNonces is how many unused nonces a Server remembers when
// MaxNonces is zero.
const DefaultMaxNonces = 1 << 16

// nonceLen is the length of a nonce: 16 random bytes in base64url.
const nonceLen = 22

// nonces is a bounded set of issued, unused nonces. Each is valid once;
// when the set is full, issuing a nonce forgets the oldest one (whose
// holder then gets badNonce and retries with the fresh nonce it was sent).
type nonces struct {
	mu   sync.Mutex
	live map[string]struct{}
	ring []string // issue order; slots of redeemed nonces are stale
	next int
}

func newNonces(max int) *nonces {
	if max <= 0 {
		max = DefaultMaxNonces
	}
	return &nonces{live: make(map[string]struct{}, min(max, 1024)), ring: make([]string, max)}
}

// issue returns a fresh nonce.
func (n *nonces) issue() string {
	var b [16]byte
	rand.Read(b[:])
	v := base64.RawURLEncoding.EncodeToString(b[:])
	n.mu.Lock()
	if old := n.ring[n.next]; old != "" {
		delete(n.live, old)
	}
	n.ring[n.next] = v
	n.next = (n.next + 1) % len(n.ring)
	n.live[v] = struct{}{}
	n.mu.Unlock()
	return v
}

// redeem reports whether v is an issued, unused nonce, and uses it up.
func (n *nonces) redeem(v string) bool {
	if len(v) != nonceLen {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.live[v]; !ok {
		return false
	}
	delete(n.live, v)
	return true
}

// len returns how many nonces are live.
func (n *nonces) len() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.live)
}
