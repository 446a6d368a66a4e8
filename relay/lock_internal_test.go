package relay

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/storage"
)

// TestLockBusy: a storage lock that is never released (a stuck request,
// a replica that died holding it) makes the request that needs it a 503
// serverInternal problem with a Retry-After once the lock wait is over,
// not a request that hangs for as long as the client waits.
func TestLockBusy(t *testing.T) {
	store := storage.NewMemory()
	held, err := store.Lock(context.Background(), lockPrefix+"nonce-key")
	if err != nil {
		t.Fatal(err)
	}
	defer held()
	s := &Server{Storage: store, SharedNonces: true, lockWait: 50 * time.Millisecond}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest(http.MethodHead, "https://relay.test/new-nonce", nil).WithContext(ctx))
	if ctx.Err() != nil {
		t.Fatal("the request waited for the lock as long as the client did")
	}
	var p acme.Problem
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatalf("answer %d %q: %v", w.Code, w.Body, err)
	}
	if w.Code != http.StatusServiceUnavailable || p.Type != problemNS+probServerInternal || w.Header().Get("Retry-After") == "" {
		t.Fatalf("answer %d %+v Retry-After %q; want 503 serverInternal with a Retry-After", w.Code, p, w.Header().Get("Retry-After"))
	}
	if strings.Contains(p.Detail, "nonce-key") || strings.Contains(p.Detail, "lock") {
		t.Errorf("the problem names the relay's insides: %q", p.Detail)
	}
}
