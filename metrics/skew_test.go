package metrics

import (
	"net/http"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// dateAhead is a Wrap whose answers carry a Date 40 days ahead: to the
// Manager, its own clock is 40 days behind the CA's.
func dateAhead(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", time.Now().Add(40*24*time.Hour).UTC().Format(http.TimeFormat))
		next.ServeHTTP(w, r)
	})
}

// The Manager's clock skew is exported, measured and corrected.
func TestClockSkewMetric(t *testing.T) {
	e := newEnv(t, testpebble.Options{Wrap: dateAhead})
	m, c := e.manager(t, Options{RefreshInterval: -1})
	if err := m.Manage(ctxT(t), "example.com"); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	got := scrape(t, c)
	want := -40 * 24 * time.Hour.Seconds()
	for _, kind := range []string{"measured", "corrected"} {
		if v := got.value(t, "tlsmint_clock_skew_seconds", "kind="+kind); v > want+5 || v < want-5 {
			t.Errorf("tlsmint_clock_skew_seconds{kind=%s}: got %v, want about %v", kind, v, want)
		}
	}
}
