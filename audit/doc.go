// Package audit keeps the audit trail of a Manager: every exchange with its
// ACME CAs (through [acme.Observer]) and every decision it reports
// (through its events), in its storage, shared by a fleet and surviving
// restarts, and answers questions about it: what happened to a name, what
// a CA answered, how close each account and registered domain is to the
// CA's rate limits.
//
// [Record] and [Filter] are [autotls.AuditRecord] and [autotls.AuditFilter]:
// [autotls.Manager.Audit] queries the Log given as Manager.AuditLog, so code
// that holds only the Manager can read its trail.
//
// # Getting started
//
//	log := &audit.Log{Storage: store, Node: "web-1"}
//	defer log.Close()
//	m := &autotls.Manager{Storage: store, AuditLog: log, …}
//	recs, err := m.Audit(ctx, audit.Filter{Name: "example.com", Since: time.Now().Add(-24 * time.Hour)}) // or log.Query
//	usage, err := log.RateLimits(ctx, time.Now(), nil) // Let's Encrypt's limits
//
// # Storage
//
// Records are buffered and written in batches of JSON lines, one stored
// value per batch under audit/<node>/, at the latest every FlushInterval
// (and at once when 256 are waiting); batches past Retention are deleted.
// Every storage backend works: files (one file per batch) or PostgreSQL
// (one row per batch). While storage fails, records stay in memory (up to
// MaxBuffered, then the oldest are dropped and the drop is logged).
//
// # Secrets
//
// A record holds the operation, names, status, the CA's problem type and
// capped detail, Retry-After, latency and retries — never request or
// response bodies, JWS, nonces, keys or EAB secrets.
//
// # Concurrency
//
// A [Log] is safe for concurrent use; [Log.Close] writes what is buffered
// and stops its goroutine.
package audit
