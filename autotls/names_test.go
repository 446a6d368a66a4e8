package autotls

import (
	"strings"
	"testing"
)

func TestNormalizeName(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"example.com", "example.com"},
		{"EXAMPLE.com.", "example.com"},
		{"Bücher.Example", "xn--bcher-kva.example"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example"},
		{"a-b.c-d.example", "a-b.c-d.example"},
		{"", ""},
		{"localhost", ""},
		{"-a.example", ""},
		{"a-.example", ""},
		{"a..example", ""},
		{".example", ""},
		{"a b.example", ""},
		{"a\x00.example", ""},
		{"*.example.com", ""},
		{"a_b.example", ""},
		{"例え.テスト", "xn--r8jz45g.xn--zckzah"},
		{strings.Repeat("a", 64) + ".example", ""},
		{"127.0.0.1", ""},
		{"192.0.2.1.", ""},
	}
	for _, tc := range cases {
		got, err := NormalizeName(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("NormalizeName(%q) = %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("NormalizeName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// FuzzNormalizeName checks that whatever a client sends as SNI, an accepted
// name is in normal form, stable, and safe as a storage key segment.
func FuzzNormalizeName(f *testing.F) {
	for _, s := range []string{"example.com", "EXAMPLE.COM.", "bücher.example", "xn--bcher-kva.example", "*.x", "a..b", "a/b", `a\b`, "\x00", "..", "127.0.0.1", "[::1]", strings.Repeat("a.", 130)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		n, err := NormalizeName(in)
		if err != nil {
			return
		}
		if !isNormalHost(n) {
			t.Fatalf("NormalizeName(%q) = %q, not in normal form", in, n)
		}
		if again, err := NormalizeName(n); err != nil || again != n {
			t.Fatalf("NormalizeName is not idempotent: %q -> %q -> %q, %v", in, n, again, err)
		}
		if len(n) > maxNameLen || strings.ContainsAny(n, "/\\\x00*_ :") || strings.Contains(n, "..") {
			t.Fatalf("NormalizeName(%q) = %q, unsafe", in, n)
		}
		// What the hot path looks up must be what the slow path accepts.
		if isNormalHost(in) && n != in {
			t.Fatalf("normal-form input %q changed to %q", in, n)
		}
	})
}
