package autotls_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// TestARIPastForEveryCertificate: a CA whose renewal information says the
// window has passed for every certificate, new ones included, gets the
// first certificate replaced at once (as a revocation needs) but not the
// replacement: it is not renewed by ARI again before it is six hours old,
// instead of being replaced in a loop stopped only by rate limits.
func TestARIPastForEveryCertificate(t *testing.T) {
	t.Parallel()
	var asked atomic.Int32
	e := newEnv(t, testpebble.Options{Wrap: func(next http.Handler) http.Handler {
		past := ariPastAlways(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, ariPath) {
				asked.Add(1)
			}
			past.ServeHTTP(w, r)
		})
	}})
	ev := newEventLog()
	m := e.manager(t, nil, func(m *autotls.Manager) { m.OnEvent = ev.on })
	if err := m.Manage(ctxT(t), "example.com"); err != nil {
		t.Fatal(err)
	}
	first := ev.next(t, autotls.EventObtained, "example.com", 30*time.Second)
	replaced := ev.next(t, autotls.EventReplaced, "example.com", 30*time.Second)
	if replaced.Serial == first.Serial {
		t.Fatal("replaced by the same certificate")
	}
	// The replacement's own renewal information says "now" too: it is
	// planned six hours after its NotBefore, not at once.
	var sched autotls.Event
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for sched.Serial == "" {
		got, more := ev.matching(autotls.EventScheduled, "example.com")
		for _, x := range got {
			if x.Serial == replaced.Serial {
				sched = x.Event
			}
		}
		if sched.Serial != "" {
			break
		}
		select {
		case <-more:
		case <-deadline.C:
			t.Fatalf("the replacement was never planned from its renewal information (%d renewalInfo requests); events: %s", asked.Load(), ev)
		}
	}
	if until := time.Until(sched.RenewAt); until < 5*time.Hour || until > 6*time.Hour+time.Minute {
		t.Errorf("the replacement is planned for renewal in %v, want about six hours (its NotBefore plus six hours)", until)
	}
	if n := ev.count(autotls.EventReplaced, "example.com"); n != 1 {
		t.Errorf("%d replacements, want 1", n)
	}
}
