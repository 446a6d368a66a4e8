package storage

import (
	"strings"
)

// The file backend maps each key to a path under its folder. The mapping is
// injective (two keys never share a path), reversible (List decodes paths
// back into keys), case-stable (no two keys map to names that differ only in
// case, so case-insensitive file systems are safe) and can never leave the
// folder:
//
//   - each segment is escaped: a-z, 0-9, '-', '_' and '.' (except a leading
//     '.') stay as they are; every other byte, upper-case letters included,
//     becomes '%' and two lower-case hex digits;
//   - a segment that leads to deeper keys is a folder named with a '+'
//     suffix, so key "a" (file "a") and key "a/b" (file "a+/b") coexist;
//   - an escaped segment longer than maxChunk bytes is cut into pieces, each
//     but the last a folder whose name ends in '&';
//   - names that start with '.' are never produced by escaping: they hold
//     temporary files and the ".locks" folder.
//
// Since '+', '&' and a leading '.' never appear in an escaped segment, every
// path decodes in exactly one way.
const (
	maxChunk   = 200
	dirSuffix  = '+'
	contSuffix = '&'
	locksDir   = ".locks"
)

// keyPath returns the slash-separated path, relative to the folder, of the
// file that holds key, and the folder that contains it ("." for the top).
// key must already have passed CheckKey.
func keyPath(key string) (dir, file string) {
	var b strings.Builder
	segs := strings.Split(key, "/")
	for i, seg := range segs {
		if i > 0 {
			b.WriteByte('/')
		}
		chunks := chunk(escapeSegment(seg))
		for j, c := range chunks {
			b.WriteString(c)
			if j < len(chunks)-1 {
				b.WriteByte(contSuffix)
				b.WriteByte('/')
			}
		}
		if i < len(segs)-1 {
			b.WriteByte(dirSuffix)
		}
	}
	file = b.String()
	if i := strings.LastIndexByte(file, '/'); i >= 0 {
		return file[:i], file
	}
	return ".", file
}

// dirPath returns the path of the folder holding keys that start with
// segs[0]/segs[1]/…/, or "." for no segments.
func dirPath(segs []string) string {
	if len(segs) == 0 {
		return "."
	}
	_, file := keyPath(strings.Join(segs, "/"))
	return file + string(dirSuffix)
}

func plain(c byte, first bool) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' && !first
}

func escapeSegment(seg string) string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(seg))
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if plain(c, i == 0) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// unescapeSegment reverses escapeSegment; ok is false for names that
// escapeSegment cannot have produced.
func unescapeSegment(s string) (seg string, ok bool) {
	if s == "" {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			if !plain(c, i == 0) {
				return "", false
			}
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		d := hi<<4 | lo
		if plain(d, i == 0) {
			return "", false // not canonical
		}
		b.WriteByte(d)
		i += 2
	}
	return b.String(), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

func chunk(s string) []string {
	if len(s) <= maxChunk {
		return []string{s}
	}
	var out []string
	for len(s) > maxChunk {
		out = append(out, s[:maxChunk])
		s = s[maxChunk:]
	}
	return append(out, s)
}
