package testpebble

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRequestLog(t *testing.T) {
	t.Parallel()
	c := newCA(t, Options{})
	base := strings.TrimSuffix(c.DirectoryURL(), "/dir")
	before := time.Now()
	fetchDirectory(t, c)
	get(t, c, http.MethodHead, base+"/nonce-plz")
	get(t, c, http.MethodGet, base+"/roots/0")
	get(t, c, http.MethodGet, base+"/nowhere")
	after := time.Now()

	got := c.RequestLog()
	want := []Request{
		{Endpoint: "directory", Method: http.MethodGet, Path: "/dir", Status: http.StatusOK},
		{Endpoint: "newNonce", Method: http.MethodHead, Path: "/nonce-plz", Status: http.StatusOK},
		{Endpoint: "management", Method: http.MethodGet, Path: "/roots/0", Status: http.StatusOK},
		{Endpoint: "other", Method: http.MethodGet, Path: "/nowhere", Status: http.StatusNotFound},
	}
	if len(got) != len(want) {
		t.Fatalf("RequestLog: got %d requests %+v, want %d", len(got), got, len(want))
	}
	for i, r := range got {
		if r.Time.Before(before) || r.Time.After(after) {
			t.Errorf("request %d: got time %v, want between %v and %v", i, r.Time, before, after)
		}
		if i > 0 && r.Time.Before(got[i-1].Time) {
			t.Errorf("request %d: got time %v before the previous request's %v", i, r.Time, got[i-1].Time)
		}
		r.Time = time.Time{}
		if r != want[i] {
			t.Errorf("request %d: got %+v, want %+v", i, r, want[i])
		}
	}
	c.ResetCounts()
	if got := len(c.RequestLog()); got != len(want) {
		t.Errorf("RequestLog after ResetCounts: got %d requests, want %d (the log is kept)", got, len(want))
	}
}

func TestRequestLogRing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		size, n  int
		want     []int // the paths kept, as numbers
		finished []int // requests finished after they were added
	}{
		{size: 3, n: 0, want: []int{}},
		{size: 3, n: 2, want: []int{0, 1}, finished: []int{0, 1}},
		{size: 3, n: 3, want: []int{0, 1, 2}, finished: []int{2}},
		{size: 3, n: 7, want: []int{4, 5, 6}, finished: []int{0, 5}},
		{size: 0, n: 2, want: []int{}, finished: []int{1}},
	}
	for _, tt := range tests {
		l := newRequestLog(tt.size)
		seqs := make([]uint64, tt.n)
		for i := range tt.n {
			seqs[i] = l.add(Request{Path: string(rune('0' + i))})
		}
		for _, i := range tt.finished {
			l.finish(seqs[i], 200+i)
		}
		got := l.snapshot()
		var paths []int
		for _, r := range got {
			i := int(r.Path[0] - '0')
			paths = append(paths, i)
			wantStatus := 0
			if slices.Contains(tt.finished, i) {
				wantStatus = 200 + i
			}
			if r.Status != wantStatus {
				t.Errorf("size %d, %d requests: request %d: got status %d, want %d", tt.size, tt.n, i, r.Status, wantStatus)
			}
		}
		if !slices.Equal(paths, tt.want) && !(len(paths) == 0 && len(tt.want) == 0) {
			t.Errorf("size %d, %d requests: got %v, want %v", tt.size, tt.n, paths, tt.want)
		}
	}
}
