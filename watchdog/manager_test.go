package watchdog_test

import (
	"testing"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/watchdog"
)

// pebbleEnv is the in-process test CA with the challenge servers its
// validation authority reaches, answering for the current Manager.
type pebbleEnv struct {
	ca *testpebble.CA
	ch *testsetup.Challenges
}

func newPebbleEnv(t *testing.T) *pebbleEnv {
	t.Helper()
	ca := testsetup.CA(t, testpebble.Options{})
	return &pebbleEnv{ca: ca, ch: testsetup.NewChallenges(t, ca)}
}

// manager returns a Manager for example.com on the test CA with its own
// storage, made the one the challenge servers answer for, after it
// obtained its certificate.
func (e *pebbleEnv) manager(t *testing.T) *autotls.Manager {
	t.Helper()
	m := testsetup.Manager(t, e.ca, nil, nil, "example.com")
	e.ch.Use(m)
	if err := m.Manage(ctxT(t), "example.com"); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	return m
}

func TestManagerListeners(t *testing.T) {
	e := newPebbleEnv(t)
	m := e.manager(t)
	other := e.manager(t) // another certificate for the same name, from the same CA
	own := testsetup.ServeTLS(t, "127.0.0.1:0", m.TLSConfig())
	stale := testsetup.ServeTLS(t, "127.0.0.1:0", other.TLSConfig())
	infos, err := m.Certificates(ctxT(t))
	if err != nil || len(infos) != 1 {
		t.Fatalf("Certificates: got %v, %v; want one", infos, err)
	}

	t.Run("names from the Manager", func(t *testing.T) {
		w := &watchdog.Watchdog{Manager: m, Listeners: []string{own, stale}, Roots: e.ca.RootPool()}
		results, err := w.Probe(ctxT(t))
		if err != nil {
			t.Fatalf("Probe: %v", err)
		}
		if len(results) != 2 {
			t.Fatalf("got %d results, want 2", len(results))
		}
		for i, want := range []watchdog.Target{
			{Addr: own, ServerName: "example.com", Managed: true},
			{Addr: stale, ServerName: "example.com", Managed: true},
		} {
			if results[i].Target != want {
				t.Errorf("result %d: got target %v, want %v", i, results[i].Target, want)
			}
			if results[i].Held == nil || results[i].Held.Serial != infos[0].Serial {
				t.Errorf("result %d: got Held %+v, want serial %s", i, results[i].Held, infos[0].Serial)
			}
		}
		checkProblems(t, results[0])
		if got, want := results[0].Serial(), infos[0].Serial; got != want {
			t.Errorf("own listener: got serial %s, want %s", got, want)
		}
		checkProblems(t, results[1], watchdog.ErrNotManagerCertificate)
		if results[1].Serial() == infos[0].Serial {
			t.Errorf("other listener: got the Manager's serial %s, want another", results[1].Serial())
		}
	})

	t.Run("configured names and targets", func(t *testing.T) {
		w := &watchdog.Watchdog{
			Manager:   m,
			Listeners: []string{own},
			Names:     []string{"example.com", "example.net"}, // the Manager refuses example.net
			Targets: []watchdog.Target{
				{Addr: stale, ServerName: "example.com", Managed: true},
				{Addr: stale, ServerName: "example.com"}, // not tied to the Manager: healthy
			},
			Roots: e.ca.RootPool(),
		}
		results, err := w.Probe(ctxT(t))
		if err != nil {
			t.Fatalf("Probe: %v", err)
		}
		want := [][]error{nil, {watchdog.ErrHandshake}, {watchdog.ErrNotManagerCertificate}, nil}
		if len(results) != len(want) {
			t.Fatalf("got %d results, want %d", len(results), len(want))
		}
		for i, r := range results {
			t.Run(r.Target.String(), func(t *testing.T) { checkProblems(t, r, want[i]...) })
		}
	})

	t.Run("Check of a managed target", func(t *testing.T) {
		w := &watchdog.Watchdog{Manager: m, Roots: e.ca.RootPool()}
		r, err := w.Check(ctxT(t), watchdog.Target{Addr: own, ServerName: "example.com", Managed: true})
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		checkProblems(t, r)
		r, err = w.Check(ctxT(t), watchdog.Target{Addr: stale, ServerName: "example.com", Managed: true})
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		checkProblems(t, r, watchdog.ErrNotManagerCertificate)
	})

	t.Run("system roots", func(t *testing.T) {
		w := &watchdog.Watchdog{Manager: m, Listeners: []string{own}}
		results, err := w.Probe(ctxT(t))
		if err != nil {
			t.Fatalf("Probe: %v", err)
		}
		checkProblems(t, results[0], watchdog.ErrUntrusted)
	})
}
