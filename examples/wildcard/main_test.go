package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestLocal runs the dns-01 flow against the test CA.
func TestLocal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out strings.Builder
	if err := runLocal(ctx, &out, "example.com", false); err != nil {
		t.Fatalf("runLocal: %v\n%s", err, out.String())
	}
	for _, want := range []string{"obtained *.example.com and example.com", "a.example.com   -> certificate for [*.example.com]", "example.com     -> certificate for [example.com]"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output %q does not contain %q", out.String(), want)
		}
	}
}

// TestLocalPersist runs the read-only dns-persist-01 flow: the record is
// asked for with nothing ordered, and once published both certificates
// are obtained and served.
func TestLocalPersist(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out strings.Builder
	if err := runLocal(ctx, &out, "example.com", true); err != nil {
		t.Fatalf("runLocal: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		`*.example.com   needs  _validation-persist.example.com. IN TXT "pebble.letsencrypt.org; accounturi=https://127.0.0.1:`,
		`example.com     needs  _validation-persist.example.com. IN TXT "pebble.letsencrypt.org; accounturi=https://127.0.0.1:`,
		"; policy=wildcard\"",
		"orders placed so far: 0; challenges accepted: 0",
		"(2 orders)",
		"a.example.com   -> certificate for [*.example.com]",
		"example.com     -> certificate for [example.com]",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output %q does not contain %q", out.String(), want)
		}
	}
}
