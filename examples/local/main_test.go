package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
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
	if err := run(ctx, &out, "127.0.0.1:0", false, ""); err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, want := range []string{"200 OK", "over HTTP/2.0", "names:   [" + name + "]"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("got output %q, want it to contain %q", out.String(), want)
		}
	}
}

// With serve, the example prints the status page's URL and serves it:
// the example's certificate, ok, with the ACME activity that obtained it.
func TestServeStatusPage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, pw, "127.0.0.1:0", true, "127.0.0.1:0")
		pw.CloseWithError(err)
		done <- err
	}()
	var url string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "status page: "); ok {
			url, _, _ = strings.Cut(rest, " ")
			break
		}
	}
	if url == "" {
		t.Fatalf("no status page URL printed (%v)", sc.Err())
	}
	go io.Copy(io.Discard, pr) // the rest of the output

	for _, tc := range []struct {
		query, contentType string
		want               []string
	}{
		{"", "text/html; charset=utf-8", []string{`data-name="` + name + `" data-state="ok"`, "exchange: newOrder"}},
		{"?format=json", "application/json; charset=utf-8", []string{`"name": "` + name + `"`, `"state": "ok"`, `"operation": "newOrder"`}},
	} {
		resp, err := http.Get(url + tc.query)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != tc.contentType {
			t.Fatalf("GET %s%s: got %s %s, want 200 %s", url, tc.query, resp.Status, resp.Header.Get("Content-Type"), tc.contentType)
		}
		for _, want := range tc.want {
			if !strings.Contains(string(body), want) {
				t.Errorf("GET %s%s: the page lacks %q", url, tc.query, want)
			}
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}
