package autotls_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tlsmint/tlsmint/autotls"
)

func TestNewHostWhitelist(t *testing.T) {
	t.Parallel()
	p, err := autotls.NewHostWhitelist("Example.COM.", "*.example.org", "bücher.example", "192.0.2.1", "2001:DB8::1", "::ffff:198.51.100.7", "[2001:db8::2]")
	if err != nil {
		t.Fatalf("NewHostWhitelist: %v", err)
	}
	cases := []struct {
		host string
		want bool
	}{
		{"example.com", true},
		{"www.example.com", false},
		{"a.example.org", true},
		{"example.org", false},
		{"a.b.example.org", false},
		{"xn--bcher-kva.example", true},
		{"192.0.2.1", true},
		{"192.0.2.2", false},
		{"2001:db8::1", true},
		{"198.51.100.7", true}, // IPv4-mapped entry, canonical IPv4
		{"2001:db8::2", true},
	}
	for _, tc := range cases {
		err := p(context.Background(), tc.host)
		if got := err == nil; got != tc.want {
			t.Errorf("policy(%q): got allowed=%v (%v), want %v", tc.host, got, err, tc.want)
		}
		if err != nil && !errors.Is(err, autotls.ErrHostNotAllowed) {
			t.Errorf("policy(%q): got %v, want ErrHostNotAllowed", tc.host, err)
		}
	}
}

func TestNewHostWhitelistReportsEveryInvalidEntry(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		entries []string
		bad     []string // entries the error must name
	}{
		{"empty", []string{"example.com", ""}, []string{`""`}},
		{"slash", []string{"a/b.example"}, []string{`"a/b.example"`}},
		{"single label", []string{"localhost"}, []string{`"localhost"`}},
		{"wildcard inside", []string{"a.*.example.com"}, []string{`"a.*.example.com"`}},
		{"bare wildcard", []string{"*"}, []string{`"*"`}},
		{"wildcard of an address", []string{"*.192.0.2.1"}, []string{`"*.192.0.2.1"`}},
		{"double wildcard", []string{"*.*.example.com"}, []string{`"*.*.example.com"`}},
		{"several", []string{"ok.example", "bad_name.example", "example.com", "a..b"}, []string{`"bad_name.example"`, `"a..b"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := autotls.NewHostWhitelist(tc.entries...)
			if err == nil {
				t.Fatalf("got no error, want one naming %v", tc.bad)
			}
			if p != nil {
				t.Errorf("got a policy with the error, want nil")
			}
			if !errors.Is(err, autotls.ErrInvalidName) {
				t.Errorf("got %v, want an error matching ErrInvalidName", err)
			}
			for _, b := range tc.bad {
				if !strings.Contains(err.Error(), b) {
					t.Errorf("got %q, want it to name %s", err, b)
				}
			}
			if got, want := strings.Count(err.Error(), "host whitelist entry"), len(tc.bad); got != want {
				t.Errorf("got %d reported entries in %q, want %d", got, err, want)
			}
		})
	}
}

func TestHostWhitelistPanicsOnInvalidEntries(t *testing.T) {
	t.Parallel()
	cases := []struct {
		entries   []string
		wantPanic bool
	}{
		{[]string{"example.com", "*.example.com", "127.0.0.1"}, false},
		{[]string{"example.com", "bad/name"}, true},
		{[]string{""}, true},
	}
	for _, tc := range cases {
		func() {
			defer func() {
				r := recover()
				if got := r != nil; got != tc.wantPanic {
					t.Errorf("HostWhitelist(%q): got panic %v, want a panic: %v", tc.entries, r, tc.wantPanic)
				}
				if err, ok := r.(error); r != nil && (!ok || !errors.Is(err, autotls.ErrInvalidName)) {
					t.Errorf("HostWhitelist(%q): got panic value %v, want an error matching ErrInvalidName", tc.entries, r)
				}
			}()
			autotls.HostWhitelist(tc.entries...)
		}()
	}
}
