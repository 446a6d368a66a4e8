package statuspage

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/audit"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/storage"
)

// ctxT is testsetup.Context, under the name the tests use.
func ctxT(t testing.TB) context.Context { return testsetup.Context(t) }

// Names of the real fleet: one healthy certificate (90 days), one with a
// short lifetime that is expiring at the fleet's page time, and one the
// CA refuses to issue for.
const (
	healthyName = "healthy.example.com"
	soonName    = "soon.example.com"
	brokenName  = "broken.example.com"
	// shortLife is the lifetime of the "short" profile; pageOffset how far
	// after issuance the fleet's page is looked at: after the end of the
	// CA's ARI window for the short certificate (Pebble's: a day either
	// side of two thirds of the lifetime, so 6 days 8 hours), 1 day and 8
	// hours before it expires, within the audit trail's week, while the
	// 90-day certificate has 83 days left.
	shortLife  = 8 * 24 * time.Hour
	pageOffset = 6*24*time.Hour + 16*time.Hour
)

// fleet is a test CA, one storage and audit trail shared by two nodes,
// and the challenge servers the CA validates against.
type fleet struct {
	ca    *testpebble.CA
	store storage.Storage
	ch    *testsetup.Challenges // answering for the Manager currently ordering
}

func newFleet(t testing.TB) *fleet {
	t.Helper()
	ca := testsetup.CA(t, testpebble.Options{
		Profiles:       map[string]time.Duration{"default": 0, "short": shortLife},
		BlockedDomains: []string{brokenName},
	})
	return &fleet{ca: ca, store: storage.NewMemory(), ch: testsetup.NewChallenges(t, ca)}
}

// node returns a Manager of the fleet with its audit trail, ordering with
// profile over http-01, made the one the challenge servers answer for.
func (f *fleet) node(t testing.TB, name, profile string) (*autotls.Manager, *audit.Log) {
	t.Helper()
	trail := &audit.Log{Storage: f.store, Node: name}
	t.Cleanup(func() { trail.Close() })
	m := testsetup.Manager(t, f.ca, f.store, func(m *autotls.Manager) {
		m.Issuers[0].Profile = profile
		m.DisableTLSALPN01 = true
		m.AuditLog = trail
	}, healthyName, soonName, brokenName)
	f.ch.Use(m)
	return m, trail
}

// realFleet runs the fleet: node-b obtains the short-lived certificate,
// node-a the 90-day one and fails on the name the CA refuses. It returns
// node-a's Manager and trail, and the time the page should be looked at.
func realFleet(t testing.TB) (*autotls.Manager, *audit.Log, time.Time) {
	t.Helper()
	f := newFleet(t)
	ctx := ctxT(t)
	mb, trailB := f.node(t, "node-b", "short")
	if err := mb.Manage(ctx, soonName); err != nil {
		t.Fatalf("node-b Manage(%s): %v", soonName, err)
	}
	if err := trailB.Flush(ctx); err != nil {
		t.Fatalf("node-b Flush: %v", err)
	}
	ma, trailA := f.node(t, "node-a", "default")
	if err := ma.Manage(ctx, healthyName); err != nil {
		t.Fatalf("node-a Manage(%s): %v", healthyName, err)
	}
	if err := ma.Manage(ctx, brokenName); err == nil {
		t.Fatalf("node-a Manage(%s) succeeded, want the CA's refusal", brokenName)
	}
	if err := trailA.Flush(ctx); err != nil {
		t.Fatalf("node-a Flush: %v", err)
	}
	return ma, trailA, time.Now().Add(pageOffset)
}

// get serves one request from a loopback client and returns the recorder.
func get(t testing.TB, h http.Handler, target string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.RemoteAddr = "127.0.0.1:50000"
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}
