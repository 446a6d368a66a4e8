package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/tlsmint/tlsmint/internal/testenv"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/statuspage"
	"github.com/tlsmint/tlsmint/storage/postgres"
)

// The commands over a PostgreSQL storage (the default table prefix, as a
// fleet uses it): obtain into it, list, show, audit.
func TestPostgresStorage(t *testing.T) {
	dsn := testenv.Postgres(t)
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	acct := ca.account(t)
	const name = "pg.example.com"
	t.Cleanup(func() {
		s, err := postgres.New(ctxT(t), postgres.Config{DSN: dsn})
		if err != nil {
			return
		}
		defer s.Close()
		// Only what this test wrote: its certificate and the command's
		// audit batches.
		keys, _ := s.List(ctxT(t), "certificates/")
		for _, k := range keys {
			if strings.Contains(k, name) {
				s.Delete(ctxT(t), k)
			}
		}
		keys, _ = s.List(ctxT(t), "audit/"+cliNode()+"/")
		for _, k := range keys {
			s.Delete(ctxT(t), k)
		}
	})
	var out certOutput
	ca.run(t, "--account-key", acct, "--storage", dsn, "--json", "obtain", name, "--http", ca.httpAddr()).ok(t).decode(t, &out)
	if !slices.Equal(out.Stored, []string{name}) {
		t.Fatalf("obtain into PostgreSQL: %+v", out)
	}
	var st statuspage.Status
	ca.run(t, "--storage", dsn, "--json", "certs", "list").ok(t).decode(t, &st)
	if !slices.ContainsFunc(st.Certificates, func(c statuspage.Certificate) bool { return c.Name == name && c.Serial == out.Serial }) {
		t.Errorf("certs list over PostgreSQL lacks %s: %+v", name, st.Certificates)
	}
	var c statuspage.Certificate
	ca.run(t, "--storage", dsn, "--json", "certs", "show", name).ok(t).decode(t, &c)
	if c.Serial != out.Serial || c.State != statuspage.StateOK {
		t.Errorf("certs show: %+v", c)
	}
	var recs []record.Audit
	ca.run(t, "--storage", dsn, "--json", "audit", "--name", name).ok(t).decode(t, &recs)
	if !slices.ContainsFunc(recs, func(r record.Audit) bool { return r.Operation == "obtained" }) {
		t.Errorf("audit over PostgreSQL: %+v", recs)
	}
	runCmd(t, nil, "--storage", "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2", "certs", "list").fails(t, exitFailure, "opening PostgreSQL storage")
}
