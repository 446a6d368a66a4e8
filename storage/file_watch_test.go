package storage_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/storage"
)

// watchDeadline bounds every wait for an event: generous, for busy machines.
const watchDeadline = 10 * time.Second

// nextEvent returns the next event, failing the test after watchDeadline.
func nextEvent(t *testing.T, events <-chan storage.Event) storage.Event {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("watch channel closed early")
		}
		return ev
	case <-time.After(watchDeadline):
		t.Fatalf("no event within %v", watchDeadline)
	}
	return storage.Event{}
}

func TestFileWatchOtherProcess(t *testing.T) {
	dir := t.TempDir()
	s := fastFile(dir)
	s.WatchInterval = 20 * time.Millisecond
	t.Cleanup(func() { _ = s.Close() })
	events, err := s.Watch(t.Context(), "watched/")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		mode string
		want storage.Event
	}{
		{"store", storage.Event{Key: "watched/value"}},
		{"delete", storage.Event{Key: "watched/value", Deleted: true}},
	} {
		startHelper(t, tt.mode, dir)
		if got := nextEvent(t, events); got != tt.want {
			t.Errorf("after a %s by another process: got %+v, want %+v", tt.mode, got, tt.want)
		}
	}
}

func TestFileWatchCloseWaits(t *testing.T) {
	s := fastFile(t.TempDir())
	s.WatchInterval = 10 * time.Millisecond
	ctx := t.Context()
	events, err := s.Watch(ctx, "k/")
	if err != nil {
		t.Fatal(err)
	}
	// More changes than the channel buffers, and a receiver that stops
	// after the first: the watcher blocks on sending, and Close must still
	// stop it.
	for i := range 70 {
		if err := s.Store(ctx, fmt.Sprintf("k/%02d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	nextEvent(t, events)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(watchDeadline):
		t.Fatalf("Close did not return within %v with a watcher blocked on its receiver", watchDeadline)
	}
	// Close waited for the watcher, so the channel is closed by now: only
	// events already buffered may come first.
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		default:
			t.Fatal("watch channel still open when Close returned")
		}
	}
}

func TestFileWatchErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	closed := storage.Dir(t.TempDir())
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		s    *storage.FileStorage
		ctx  context.Context
		want error // nil: any error
	}{
		{"cancelled context", storage.Dir(t.TempDir()), cancelled, context.Canceled},
		{"closed storage", closed, t.Context(), storage.ErrClosed},
		{"Path is a file", storage.Dir(file), t.Context(), nil},
	} {
		events, err := tt.s.Watch(tt.ctx, "")
		if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("%s: Watch: got %v, %v; want an error wrapping %v", tt.name, events, err, tt.want)
		}
	}
}
