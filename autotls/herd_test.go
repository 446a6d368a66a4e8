package autotls_test

import (
	"slices"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/storage"
)

// Certificates that came due while the Manager was down keep a spread after
// the restart, whether they are planned by discovery, from the index, or
// loaded by Manage: none is planned within the first seconds in a herd,
// and no second holds more than a few of them (39 renewals were seen lined
// up within 0.43 s before).
func TestRestartKeepsSpread(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	f := newFixture(t)
	store := storage.NewMemory()
	const n = 300
	// 75 days into a 90-day life: past the renewal window, with more
	// than a tenth of the life left (less is renewed at once).
	names := storeDue(t, f, store, e.ca.DirectoryURL(), n, time.Now().Add(-75*24*time.Hour), time.Now().Add(15*24*time.Hour))
	// The next step of each name (a renewal, or an ARI look further
	// ahead), or, for certificates in memory, their renewal.
	check := func(t *testing.T, m *autotls.Manager, how string) {
		t.Helper()
		start := time.Now()
		var at []time.Duration
		renewAt := map[string]time.Time{}
		if how == "Manage" {
			infos, err := m.Certificates(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			for _, info := range infos {
				renewAt[info.Name] = info.RenewAt
			}
		}
		for _, name := range names {
			p, ok := autotls.PlanTimeForTest(m, name)
			if r, in := renewAt[name]; in {
				p, ok = r, true
			}
			if !ok {
				t.Fatalf("%s: %s is not planned", how, name)
			}
			at = append(at, p.Sub(start))
		}
		slices.Sort(at)
		if at[len(at)-1] > time.Hour+time.Second {
			t.Errorf("%s: the last overdue renewal is planned in %v, want within the hour", how, at[len(at)-1])
		}
		// 300 names over an hour: about one every 12 s.
		for i := 0; i+5 < len(at); i++ {
			if at[i+5]-at[i] < time.Second {
				t.Fatalf("%s: six renewals planned within %v (from %v on); plans: %v", how, at[i+5]-at[i], at[i], at)
			}
		}
		if got := e.ca.Requests("newOrder"); got > 2 {
			t.Errorf("%s: %d orders at once after the start, want at most a couple", how, got)
		}
	}

	// Discovery plans them (and writes the index).
	first := e.manager(t, store, func(m *autotls.Manager) { m.Hosts = nil })
	autotls.SetFastDiscoveryForTest(first)
	first.TLSConfig()
	<-autotls.DiscoveredForTest(first)
	check(t, first, "discovery")
	first.Close()

	// The next start plans them from the index.
	second := e.manager(t, store, func(m *autotls.Manager) { m.Hosts = nil })
	autotls.SetFastDiscoveryForTest(second)
	second.TLSConfig()
	<-autotls.DiscoveredForTest(second)
	check(t, second, "index")

	// Manage loads each of them.
	third := e.manager(t, store, nil)
	if err := third.Manage(ctxT(t), names...); err != nil {
		t.Fatal(err)
	}
	check(t, third, "Manage")
}
