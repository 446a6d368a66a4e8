package relay

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/audit"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/storage"
)

// TestUnauthenticatedRefusalsSampled: requests that carry no valid
// account (here: bodies that are no JWS, from two networks) reach
// OnDecision every one, but the audit trail only the first of each
// problem and source network per UnauthenticatedSampleInterval; the next
// record kept says how many were left out.
func TestUnauthenticatedRefusalsSampled(t *testing.T) {
	store := storage.NewMemory()
	log := &audit.Log{Storage: store, Node: "t", FlushInterval: time.Hour}
	defer log.Close()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	decisions := 0
	s := &Server{Storage: store, AuditLog: log, now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }, OnDecision: func(record.Audit) { mu.Lock(); decisions++; mu.Unlock() }}
	defer s.Close()
	post := func(from string) {
		r := httptest.NewRequest(http.MethodPost, "https://relay.example/new-order", strings.NewReader("not a JWS"))
		r.Header.Set("Content-Type", "application/jose+json")
		r.RemoteAddr = from
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code != http.StatusBadRequest {
			t.Fatalf("got %d, want 400", w.Code)
		}
	}
	for range 200 {
		post("203.0.113.9:4000")
	}
	post("198.51.100.1:4000") // another network: a record of its own
	query := func() []record.Audit {
		if err := log.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		recs, err := log.Query(context.Background(), record.AuditFilter{Operation: OperationPrefix + "newOrder"})
		if err != nil {
			t.Fatal(err)
		}
		return recs
	}
	if recs := query(); len(recs) != 2 || decisions != 201 {
		t.Fatalf("%d records kept, %d decisions; want 2 kept (one per network) and all 201 decided", len(recs), decisions)
	}
	mu.Lock()
	now = now.Add(UnauthenticatedSampleInterval)
	mu.Unlock()
	post("203.0.113.50:1")
	recs := query()
	if len(recs) != 3 {
		t.Fatalf("%d records after the interval, want 3", len(recs))
	}
	var found bool
	for _, r := range recs {
		if strings.Contains(r.Detail, "199 more refusals like it from 203.0.113.0/24") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no record says 199 refusals were left out: %+v", recs)
	}
}
