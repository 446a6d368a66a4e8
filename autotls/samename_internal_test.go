package autotls

import (
	"strings"
	"testing"
)

// TestSameName compares sameName with == for names of every length up to
// 40 bytes, equal or differing in one byte at each position, read at every
// alignment (substrings of a longer string start at any address).
func TestSameName(t *testing.T) {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-.ab"
	for n := 0; n <= len(alphabet); n++ {
		for off := range 8 {
			buf := strings.Repeat("x", off) + alphabet[:n] + "yyyyyyyy"
			a := buf[off : off+n]
			b := strings.Clone(alphabet[:n])
			if got := sameName(a, b); !got {
				t.Errorf("sameName(%q, %q) at offset %d = false, want true", a, b, off)
			}
			for i := range n {
				d := []byte(b)
				d[i] ^= 0x20
				if got, want := sameName(a, string(d)), a == string(d); got != want {
					t.Errorf("sameName(%q, %q) = %v, want %v", a, d, got, want)
				}
			}
			if n > 0 {
				if got := sameName(a, b[:n-1]); got {
					t.Errorf("sameName(%q, %q) = true for different lengths", a, b[:n-1])
				}
				if got := sameName(a[:n-1], b); got {
					t.Errorf("sameName(%q, %q) = true for different lengths", a[:n-1], b)
				}
			}
		}
	}
}
