package storagetest

import (
	"context"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/storage"
)

func (s *suite) testWatch(t *testing.T) {
	ctx := testContext(t)
	writer, reader := s.newStorage(t), s.newStorage(t)
	w, ok := reader.(storage.Watcher)
	if !ok {
		t.Skip("the backend does not implement storage.Watcher")
	}
	prefix := s.key("watch", "certs") + "/"
	watchCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := w.Watch(watchCtx, prefix)
	if err != nil {
		t.Fatalf("Watch(%q): %v", prefix, err)
	}
	next := func() storage.Event {
		t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("watch channel closed early")
			}
			return ev
		case <-time.After(10 * time.Second):
			t.Fatal("no event within 10s")
		}
		return storage.Event{}
	}
	outside := s.key("watch", "other")
	inside := prefix + "example.com/example.com.crt"
	mustStore(t, ctx, writer, outside, []byte("x"))
	mustStore(t, ctx, writer, inside, []byte("cert"))
	if ev := next(); ev != (storage.Event{Key: inside}) {
		t.Errorf("first event = %+v, want %+v (a key outside the prefix must not be reported)", ev, storage.Event{Key: inside})
	}
	if err := writer.Delete(ctx, inside); err != nil {
		t.Fatal(err)
	}
	if ev := next(); ev != (storage.Event{Key: inside, Deleted: true}) {
		t.Errorf("event after Delete = %+v, want %+v", ev, storage.Event{Key: inside, Deleted: true})
	}
	cancel()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("watch channel not closed after its context was cancelled")
		}
	}
}
