package textclip

import (
	"testing"
	"unicode/utf8"
)

func TestPrefix(t *testing.T) {
	for _, s := range []string{"", "plain", "ééé", "a€b€", "日本語", "\xff\xfe invalid", "😀😀"} {
		for n := -1; n <= len(s)+1; n++ {
			p := Prefix(s, n)
			if len(p) > max(n, 0) && len(s) > n {
				t.Errorf("Prefix(%q, %d) = %q: longer than %d", s, n, p, n)
			}
			if utf8.ValidString(s) && !utf8.ValidString(p) {
				t.Errorf("Prefix(%q, %d) = %q: not valid UTF-8", s, n, p)
			}
			if s[:len(p)] != p {
				t.Errorf("Prefix(%q, %d) = %q: not a prefix", s, n, p)
			}
			if len(s) <= n && p != s {
				t.Errorf("Prefix(%q, %d) = %q, want it whole", s, n, p)
			}
		}
	}
	if got := Ellipsis("ééé", 3); got != "é…" {
		t.Errorf("Ellipsis = %q, want é…", got)
	}
	if got := Ellipsis("short", 10); got != "short" {
		t.Errorf("Ellipsis of a short string = %q", got)
	}
}
