package audit_test

import (
	"context"
	"log"
	"time"

	"github.com/tlsmint/tlsmint/audit"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/storage"
)

// A Manager whose exchanges and decisions go to the audit trail in its
// storage, and what an operator asks of it.
func Example() {
	store := storage.Dir("/var/lib/tlsmint")
	trail := &audit.Log{Storage: store, Node: "web-1"}
	defer trail.Close()
	m := &autotls.Manager{
		Storage:   store,
		Hosts:     autotls.HostWhitelist("example.com"),
		AcceptTOS: true,
		AuditLog:  trail,
	}
	defer m.Close()

	ctx := context.Background()
	failures, err := trail.Query(ctx, record.AuditFilter{Outcome: record.OutcomeFailure, Since: time.Now().Add(-24 * time.Hour)})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range failures {
		log.Printf("%s %s %v: %s %s", r.Time, r.Operation, r.Names, r.Problem, r.Detail)
	}
	usage, err := trail.RateLimits(ctx, time.Now(), nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, u := range usage {
		if u.Near() {
			log.Printf("%s %s: %d of %d within %v", u.Kind, u.Key, u.Count, u.Limit, u.Window)
		}
	}
}
