package main

import (
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tlsmint/tlsmint/internal/durfmt"
)

func TestParseDays(t *testing.T) {
	for in, want := range map[string]time.Duration{"14d": 14 * 24 * time.Hour, "36h": 36 * time.Hour, "1d12h": 36 * time.Hour, "0": 0, "90m": 90 * time.Minute,
		"90d 3h": 90*24*time.Hour + 3*time.Hour, "5m 30s": 5*time.Minute + 30*time.Second} { // as durfmt prints them
		if got, err := parseDays(in); err != nil || got != want {
			t.Errorf("parseDays(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "-1d", "1x", "soon", "1d-2h"} {
		if got, err := parseDays(in); err == nil && in != "" {
			t.Errorf("parseDays(%q) = %v, want an error", in, got)
		}
	}
}

// FuzzParseDays: durations from the command line never panic and are
// never negative.
func FuzzParseDays(f *testing.F) {
	for _, s := range []string{"14d", "1d12h", "36h", "0", "d", "9999999999999d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseDays(s)
		if err == nil && d < 0 {
			t.Fatalf("parseDays(%q) = %v", s, d)
		}
		// What the output prints reads back, rounded down as printed.
		if err == nil {
			back, err := parseDays(durfmt.Format(d))
			if err != nil || back > d {
				t.Fatalf("parseDays(durfmt.Format(%v) = %q) = %v, %v; want at most %v", d, durfmt.Format(d), back, err, d)
			}
		}
	})
}

// clip never cuts a UTF-8 sequence in two.
func TestClipUTF8(t *testing.T) {
	for _, s := range []string{"ééééé", "a€€€€", "日本語のテキスト", "plain ascii text"} {
		for n := range len(s) {
			if got := clip(s, n); !utf8.ValidString(got) {
				t.Errorf("clip(%q, %d) = %q, not valid UTF-8", s, n, got)
			}
		}
	}
}
