// Package textclip shortens text for error messages, logs and records
// without cutting a UTF-8 sequence in two.
package textclip

// Prefix returns the longest prefix of s of at most n bytes that ends on
// a UTF-8 sequence boundary (s itself when it is no longer than n).
func Prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	for n > 0 && s[n]&0xc0 == 0x80 {
		n-- // s[n] continues the sequence before it
	}
	return s[:n]
}

// Ellipsis is Prefix with "…" after a prefix that is shorter than s.
func Ellipsis(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return Prefix(s, n) + "…"
}
