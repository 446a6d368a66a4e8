package acme

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on text the CA controls that ends up in errors and logs.
const (
	// MaxProblemDetail caps a problem's detail, in bytes; longer text is
	// cut at a character boundary and ends in "…".
	MaxProblemDetail = 512
	// maxProblemType caps a problem's type URN and instance URL.
	maxProblemType = 256
	// maxSubproblems caps the subproblems kept from one problem document.
	maxSubproblems = 16
)

// clipString strips control and invisible formatting characters from s
// (a CA's text must not forge log lines or terminal escapes), folds runs of
// white space into one space, and cuts the result to at most max bytes at
// a character boundary.
func clipString(s string, max int) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || r < 0x20 || r == 0x7f || unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r) {
			clean = false
			break
		}
	}
	if !clean {
		s = strings.Map(func(r rune) rune {
			switch {
			case r == utf8.RuneError:
				return '?'
			case r == '\t' || r == '\n' || r == '\r':
				return ' '
			case r < 0x20 || r == 0x7f || unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r):
				return -1
			}
			return r
		}, s)
		s = strings.Join(strings.Fields(s), " ")
	}
	if len(s) <= max {
		return s
	}
	const ellipsis = "…"
	cut := max - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	if cut < 0 {
		cut = 0
	}
	return s[:cut] + ellipsis
}
