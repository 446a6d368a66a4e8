package storage

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/tlsmint/tlsmint/internal/textclip"
)

// MaxKeyLen is the longest key or lock name, in bytes, that every backend
// accepts.
const MaxKeyLen = 1024

// CheckKey reports whether key is a valid key or lock name, returning nil if
// so and otherwise an error wrapping [ErrInvalidKey]. Every backend applies
// the same rules, so a key accepted by one is accepted by all:
//
//   - between 1 and [MaxKeyLen] bytes of valid UTF-8;
//   - no control characters (which excludes NUL) and no backslash;
//   - segments separated by single slashes: no leading or trailing slash and
//     no empty segment;
//   - no segment that is "." or "..".
//
// Anything else is allowed, including upper case, spaces, "*", "%", "~",
// non-ASCII letters and segments that start with a dot. Keys are compared
// byte for byte: "Example" and "example" are different keys on every
// backend, including file systems that ignore case.
func CheckKey(key string) error {
	if err := checkKey(key); err != "" {
		return fmt.Errorf("%w %q: %s", ErrInvalidKey, truncate(key), err)
	}
	return nil
}

func checkKey(key string) string {
	switch {
	case key == "":
		return "empty"
	case len(key) > MaxKeyLen:
		return fmt.Sprintf("longer than %d bytes", MaxKeyLen)
	case !utf8.ValidString(key):
		return "not valid UTF-8"
	case strings.HasPrefix(key, "/"):
		return "absolute (leading slash)"
	case strings.HasSuffix(key, "/"):
		return "trailing slash"
	}
	for i := 0; i < len(key); i++ {
		switch c := key[i]; {
		case c < 0x20 || c == 0x7f:
			return "contains a control character"
		case c == '\\':
			return "contains a backslash"
		}
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch seg {
		case "":
			return "empty segment"
		case ".", "..":
			return "contains a . or .. segment"
		}
	}
	return ""
}

// truncate shortens very long keys in error messages.
func truncate(key string) string {
	return textclip.Ellipsis(key, 100)
}
