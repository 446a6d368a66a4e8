package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// The example's client negotiates HTTP/2, as a browser would, and gets a
// certificate for the test name.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, &out, "127.0.0.1:0", false); err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, want := range []string{"200 OK", "over HTTP/2.0", "names:   [" + name + "]"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("got output %q, want it to contain %q", out.String(), want)
		}
	}
}
