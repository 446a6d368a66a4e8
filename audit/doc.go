// Package audit keeps the audit trail of a Manager: every exchange with its
// ACME CAs (through [acme.Observer]) and every decision it reports
// (through its events), in its storage, shared by a fleet and surviving
// restarts, and answers questions about it: what happened to a name, what
// a CA answered, how close each account and registered domain is to the
// CA's rate limits.
//
// The records and the filter that selects them are package record's
// [record.Audit] and [record.AuditFilter], with its kinds
// ([record.KindExchange], …) and outcomes ([record.OutcomeOK], …):
// [autotls.Manager.Audit] queries the Log given as Manager.AuditLog, the
// relay and the watchdog write the same records, so code that holds only
// the Manager can read its trail.
//
// # Getting started
//
//	log := &audit.Log{Storage: store, Node: "web-1"}
//	defer log.Close()
//	m := &autotls.Manager{Storage: store, AuditLog: log, …}
//	recs, err := m.Audit(ctx, record.AuditFilter{Name: "example.com", Since: time.Now().Add(-24 * time.Hour)}) // or log.Query
//	usage, err := log.RateLimits(ctx, time.Now(), nil) // Let's Encrypt's limits
//
// # Storage
//
// Records are buffered and written at the latest every FlushInterval (and
// at once when 256 are waiting); records past Retention are deleted. Where
// the storage is a [storage.Journal] the trail is its journal "audit": in
// the file backend, JSON-lines files rotated every hour
// (.journal/audit/<node>/<YYYYMMDDHH>.jsonl, one record per line, whole
// hours deleted by retention); in PostgreSQL, rows of the journal table,
// indexed by time and by name, so a query by name or time range reads
// only what matches. Other storages (MemoryStorage, your own) keep each
// flush as one value of JSON lines under audit/<node>/; Query also reads
// such batches where a journal is used, so a trail written before is not
// lost. While storage fails, records stay in memory (up to MaxBuffered,
// then the oldest are dropped and the drop is logged), and the flush after
// the failure writes each of them once: a journal's append keeps a whole
// flush or none of it (the file backend cuts a write a full disk stopped
// part-way back), and a flush stored as a value is stored again under the
// key that failed. A record a journal
// cannot hold (a time outside the years 1970 to 9999, a field too long
// even with its names and detail clipped) is dropped and logged at once,
// so that it never holds back the records flushed with it.
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
