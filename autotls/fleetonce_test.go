package autotls_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/storage"
	"github.com/tlsmint/tlsmint/storage/postgres"
)

// orderLog is a Wrap that records every newOrder's identifiers and
// "replaces" field.
type orderLog struct {
	mu       sync.Mutex
	names    []string
	replaces []string
}

func (l *orderLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/order-plz" {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var jws struct{ Payload string }
			json.Unmarshal(body, &jws)
			p, _ := base64.RawURLEncoding.DecodeString(jws.Payload)
			var o struct {
				Identifiers []struct{ Value string }
				Replaces    string
			}
			json.Unmarshal(p, &o)
			l.mu.Lock()
			if len(o.Identifiers) > 0 {
				l.names = append(l.names, o.Identifiers[0].Value)
			}
			l.replaces = append(l.replaces, o.Replaces)
			l.mu.Unlock()
		}
		next.ServeHTTP(w, r)
	})
}

// lastReplaces returns the last "replaces" value sent (empty: none).
func (l *orderLog) lastReplaces() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.replaces) - 1; i >= 0; i-- {
		if l.replaces[i] != "" {
			return l.replaces[i]
		}
	}
	return ""
}

// counts returns the orders per name, and the replaces values sent more
// than once.
func (l *orderLog) counts() (map[string]int, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	per := map[string]int{}
	for _, n := range l.names {
		per[n]++
	}
	seen := map[string]int{}
	var twice []string
	for _, r := range l.replaces {
		if r == "" {
			continue
		}
		if seen[r]++; seen[r] == 2 {
			twice = append(twice, r)
		}
	}
	return per, twice
}

// ariPastAlways is a Wrap whose renewal information says, for every
// certificate, that its window has passed.
func ariPastAlways(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, ariPath) {
			next.ServeHTTP(w, r)
			return
		}
		now := time.Now().UTC()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "3600")
		json.NewEncoder(w).Encode(map[string]any{"suggestedWindow": map[string]time.Time{
			"start": now.Add(-2 * time.Hour), "end": now.Add(-time.Hour),
		}})
	})
}

// laggyStore is a storage that takes lag to answer each Load and Store, as
// a distant or overloaded one does: the node using it sees the others'
// Stores late.
type laggyStore struct {
	storage.Storage
	lag time.Duration
}

func (s laggyStore) Load(ctx context.Context, key string) ([]byte, error) {
	time.Sleep(s.lag)
	return s.Storage.Load(ctx, key)
}

func (s laggyStore) Store(ctx context.Context, key string, value []byte) error {
	time.Sleep(s.lag)
	return s.Storage.Store(ctx, key, value)
}

// Three Managers sharing storage, whose CA's renewal information says at
// once, to each of them, that every certificate must be replaced: each
// certificate is replaced exactly once across the fleet (one order naming
// it in "replaces"), and the replacement is not replaced again — also
// with one node slow to see the others' Stores. Before, a node that
// loaded the replacement another node had just stored found it due (the
// floor the obtaining node applied was not stored), ordered a
// replacement of the old certificate, got alreadyReplaced and ordered
// again without "replaces": a second certificate in about half the runs.
// Eight names make a one-in-two failure all but certain.
func TestFleetReplacesOnce(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		lag  time.Duration
		pg   bool
	}{{"files", 0, false}, {"files/slow-node", 100 * time.Millisecond, false}, {"postgres", 0, true}}
	for _, tc := range cases {
		lag := tc.lag
		t.Run(tc.name, func(t *testing.T) {
			var dsn, prefix string
			if tc.pg {
				dsn = fleetDSN(t)
			}
			t.Parallel()
			if tc.pg {
				prefix = fleetPrefix(t, dsn)
			}
			var log orderLog
			e := newEnv(t, testpebble.Options{Wrap: func(h http.Handler) http.Handler { return log.wrap(ariPastAlways(h)) }})
			dir := t.TempDir()
			names := []string{"n0.example.com", "n1.example.com", "n2.example.com", "n3.example.com", "n4.example.com", "n5.example.com", "n6.example.com", "n7.example.com"}
			// The first node obtains every certificate; the replacements
			// are then due at once on all three.
			var nodes []*autotls.Manager
			var evs []*eventLog
			var logs []*syncBuffer
			t.Cleanup(func() {
				if t.Failed() {
					for i, l := range logs {
						t.Logf("node %d logs:\n%s", i, l.String())
					}
				}
			})
			for i := range 3 {
				var store storage.Storage = storage.Dir(dir)
				if tc.pg {
					store = openPostgres(t, postgres.Config{DSN: dsn, TablePrefix: prefix, LockPollInterval: 20 * time.Millisecond})
				}
				if i == 2 && lag > 0 {
					store = laggyStore{Storage: store, lag: lag}
				}
				ev := newEventLog()
				lg := &syncBuffer{}
				logs = append(logs, lg)
				m := e.manager(t, store, func(m *autotls.Manager) {
					m.Hosts = autotls.HostWhitelist(names...)
					m.OnEvent = ev.on
					m.Logger = slog.New(slog.NewTextHandler(lg, &slog.HandlerOptions{Level: slog.LevelDebug}))
				})
				nodes, evs = append(nodes, m), append(evs, ev)
			}
			for i, m := range nodes {
				if err := m.Manage(ctxT(t), names...); err != nil {
					t.Fatalf("node %d: Manage: %v", i, err)
				}
			}
			// Each certificate: one order, then one replacement; every
			// node polls the renewal information of both (those of
			// loaded certificates come due within a minute: the steps
			// are run as if it had passed).
			settled := func() error {
				for i, m := range nodes {
					infos, err := m.Certificates(ctxT(t))
					if err != nil {
						return err
					}
					if len(infos) != len(names) {
						return fmt.Errorf("node %d: %d certificates, want %d", i, len(infos), len(names))
					}
					for _, info := range infos {
						if left := time.Until(info.RenewAt); left < 5*time.Hour {
							return fmt.Errorf("node %d: %s is planned for renewal in %v (%s), want its floor about six hours after it was obtained", i, info.Name, left, info.RenewReason)
						}
					}
				}
				return nil
			}
			// Each certificate is ordered, then replaced once.
			replaced := func() error {
				per, _ := log.counts()
				for _, n := range names {
					if per[n] < 2 {
						return fmt.Errorf("%s: %d orders so far", n, per[n])
					}
				}
				return settled()
			}
			deadline := time.Now().Add(60 * time.Second)
			for err := replaced(); err != nil; err = replaced() {
				if time.Now().After(deadline) {
					per, _ := log.counts()
					t.Fatalf("%v; orders: %v; events: %s / %s / %s", err, per, evs[0], evs[1], evs[2])
				}
				for _, m := range nodes {
					autotls.RunDueForTest(m, time.Now().Add(2*time.Minute))
				}
				time.Sleep(20 * time.Millisecond)
			}
			// Every node polls the renewal information of the
			// replacement, which says "passed" too: still planned at
			// its floor, and no order.
			r0 := e.ca.Requests("renewalInfo")
			for deadline := time.Now().Add(30 * time.Second); e.ca.Requests("renewalInfo") < r0+len(names)*len(nodes); {
				if time.Now().After(deadline) {
					t.Fatalf("%d renewalInfo requests for the replacements, want %d", e.ca.Requests("renewalInfo")-r0, len(names)*len(nodes))
				}
				for _, m := range nodes {
					autotls.RunDueForTest(m, time.Now().Add(2*time.Hour))
				}
				time.Sleep(20 * time.Millisecond)
			}
			for err := settled(); err != nil; err = settled() {
				if time.Now().After(deadline) {
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			per, twice := log.counts()
			for _, n := range names {
				if per[n] != 2 {
					t.Errorf("%s: %d orders across the fleet, want 2 (the first certificate and its one replacement); events: %s / %s / %s", n, per[n], evs[0], evs[1], evs[2])
				}
			}
			if len(twice) > 0 {
				t.Errorf("certificates replaced twice: %v", twice)
			}
		})
	}
}

// A node renews a certificate and dies before storing the replacement (its
// Stores fail, then it stops): the next node's order naming the old
// certificate in "replaces" is refused alreadyReplaced. It does not order
// again at once: it waits its back-off for the replacement to reach
// storage, then orders once without "replaces" — one order, not a loop.
func TestReplacementNeverStored(t *testing.T) {
	t.Parallel()
	var log orderLog
	e := newEnv(t, testpebble.Options{Wrap: log.wrap})
	const name = "example.com"
	shared := storage.NewMemory()
	dying := &failingStore{Storage: shared}
	a := e.manager(t, dying, nil)
	if err := a.Manage(ctxT(t), name); err != nil {
		t.Fatal(err)
	}
	dying.fail.Store(true)
	if err := autotls.RenewForTest(a, name); err != nil {
		t.Fatal(err)
	}
	a.Close() // it dies with the replacement in memory only

	ev := newEventLog()
	b := e.manager(t, shared, func(m *autotls.Manager) {
		m.OnEvent = ev.on
		m.FailureBackoff = 300 * time.Millisecond
	})
	if err := b.Manage(ctxT(t), name); err != nil {
		t.Fatal(err)
	}
	first := served(t, b, name)
	err := autotls.RenewForTest(b, name)
	if err == nil {
		// Pebble marks the replaced certificate in a goroutine of its own
		// after the replacement is issued: its answer came before.
		if per, _ := log.counts(); per[name] != 3 {
			t.Fatalf("%d newOrder requests, want 3 (a's two and b's accepted one)", per[name])
		}
		t.Log("the CA had not yet marked the certificate replaced: b's order was accepted")
		return
	}
	if !errors.Is(err, acme.ErrReplacesRefused) {
		t.Fatalf("renewing after the lost replacement: %v, want the CA's refusal of replaces", err)
	}
	log.mu.Lock()
	n := len(log.names)
	log.mu.Unlock()
	if n != 3 {
		t.Fatalf("%d newOrder requests, want 3 (a's two, b's refused one)", n)
	}
	// The retry after the back-off orders without replaces.
	renewed := ev.waitN(t, autotls.EventRenewed, name, 1, 30*time.Second)[0]
	if renewed.Serial == first {
		t.Fatal("renewed to the same certificate")
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if n := len(log.replaces); n != 4 || log.replaces[3] != "" {
		t.Errorf("newOrder replaces values %q, want a fourth order without replaces", log.replaces)
	}
}
