package storagetest

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/storage"
)

// watchDeadline is how long the Watch tests wait for an event: generous,
// for polling backends and busy machines.
const watchDeadline = 10 * time.Second

// testWatch checks [storage.Watcher]: changes made through another client
// of the same backing store, and through the watching client itself, are
// reported, in order for each key; changes outside the prefix are not; the
// channel is closed when the context is done and when the client is closed.
//
// Since a backend may report one change more than once, a repeat of an
// event already received is tolerated; any other unexpected event fails.
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
	var last storage.Event
	// expect waits for the events in want, in any order, tolerating
	// repeats of the events it receives and of the last one before.
	expect := func(what string, want ...storage.Event) {
		t.Helper()
		seen := []storage.Event{last}
		deadline := time.After(watchDeadline)
		for len(want) > 0 {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatalf("%s: watch channel closed early", what)
				}
				if i := slices.Index(want, ev); i >= 0 {
					want = slices.Delete(want, i, i+1)
					seen = append(seen, ev)
					last = ev
				} else if !slices.Contains(seen, ev) {
					t.Fatalf("%s: got event %+v, want one of %+v", what, ev, want)
				}
			case <-deadline:
				t.Fatalf("%s: no event %+v within %v", what, want, watchDeadline)
			}
		}
	}

	inside := prefix + "example.com/example.com.crt"
	mustStore(t, ctx, writer, s.key("watch", "other"), []byte("x"))
	mustStore(t, ctx, writer, inside, []byte("cert"))
	expect("Store by another client (after a Store outside the prefix)", storage.Event{Key: inside})

	mustStore(t, ctx, writer, inside, []byte("CERT"))
	expect("overwrite with a value of the same length", storage.Event{Key: inside})

	if err := writer.Delete(ctx, inside); err != nil {
		t.Fatal(err)
	}
	expect("Delete by another client", storage.Event{Key: inside, Deleted: true})

	mustStore(t, ctx, writer, inside, []byte("cert"))
	expect("Store after Delete", storage.Event{Key: inside})

	// Several keys at once, some through the watching client.
	var burst []storage.Event
	for i, st := range []storage.Storage{writer, reader, writer} {
		key := prefix + "burst/" + string(rune('a'+i))
		mustStore(t, ctx, st, key, []byte("v"))
		burst = append(burst, storage.Event{Key: key})
	}
	expect("Stores of three keys, one through the watching client", burst...)

	cancel()
	waitClosed(t, "after its context was cancelled", events)

	// Closing the watching client closes its channels, and it can watch no
	// more. This needs a client of its own that can be closed.
	closer, ok := reader.(io.Closer)
	if !ok || any(reader) == any(writer) {
		return
	}
	events, err = w.Watch(ctx, prefix)
	if err != nil {
		t.Fatalf("second Watch(%q): %v", prefix, err)
	}
	if err := closer.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitClosed(t, "after the client was closed", events)
	if _, err := w.Watch(ctx, prefix); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Watch after Close: got %v, want an error wrapping storage.ErrClosed", err)
	}
}

// waitClosed drains events until the channel is closed.
func waitClosed(t *testing.T, what string, events <-chan storage.Event) {
	t.Helper()
	deadline := time.After(watchDeadline)
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("watch channel not closed %s within %v", what, watchDeadline)
		}
	}
}
