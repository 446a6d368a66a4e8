package autotls

import (
	"bytes"
	"strings"
	"sync"
)

// Bounds of an interner: a CA signs with a handful of intermediates and
// has a few accounts, so past these values are simply not shared.
const (
	internMaxValues = 64
	internMaxDER    = 8 << 10
)

// interner keeps one copy of what the certificates of one CA have in
// common — the intermediates of their chains, the account URL — so that
// each certificate in memory does not hold its own. It holds at most
// internMaxValues of each kind, and never changes a value it returned.
// It is safe for concurrent use.
type interner struct {
	mu   sync.Mutex
	ders map[string][]byte
	strs map[string]string
}

// der returns a copy of b that may be shared with other callers; the
// caller must not modify it.
func (in *interner) der(b []byte) []byte {
	if len(b) > internMaxDER {
		return bytes.Clone(b)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.ders[string(b)]; ok {
		return v
	}
	v := bytes.Clone(b)
	if len(in.ders) < internMaxValues {
		if in.ders == nil {
			in.ders = make(map[string][]byte)
		}
		in.ders[string(v)] = v
	}
	return v
}

// str returns s, or an equal string that other callers share.
func (in *interner) str(s string) string {
	if s == "" || len(s) > internMaxDER {
		return s
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.strs[s]; ok {
		return v
	}
	if len(in.strs) < internMaxValues {
		if in.strs == nil {
			in.strs = make(map[string]string)
		}
		s = strings.Clone(s)
		in.strs[s] = s
	}
	return s
}
