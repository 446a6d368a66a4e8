// Package postgres is a [storage.Storage] kept in PostgreSQL, so that a
// fleet of servers shares certificates, keys and accounts, and only one node
// orders each certificate.
//
// # Getting started
//
//	s, err := postgres.New(ctx, postgres.Config{DSN: "postgres://tlsmint@db.internal/tlsmint?sslmode=verify-full"})
//	if err != nil {
//		return err
//	}
//	defer s.Close()
//
// [New] connects, then creates the schema or upgrades it (versioned
// migrations, serialised by an advisory lock so that a fleet may start at
// once). Everything is named with [Config.TablePrefix], "tlsmint_" by
// default: tables tlsmint_values (key, value, modified), tlsmint_locks
// (name, owner, expires, token), tlsmint_journal (storage.Journal's entries:
// journal, time, node, keys, data; indexed by journal and time, and by key)
// and tlsmint_schema_version, the sequence
// tlsmint_fence, and a trigger that announces every change on the
// notification channel tlsmint_changes. The database user needs the CREATE
// privilege on the schema only when the schema is missing or older than
// the code; on a current schema New reads its version and creates
// nothing, so a runtime role with SELECT, INSERT, UPDATE and DELETE on the
// tables and USAGE on the sequences starts. A schema newer than the code
// (written by a newer release) is refused with [ErrSchemaTooNew] before
// anything is written, also by such a role or on a read-only connection.
// docs/postgres.md (in the repository) gives the rows and bytes
// per name and how to run this on a managed PostgreSQL (privileges,
// connections, poolers, TLS).
//
// Locks are leases: a row with an owner, an expiry and a fencing token. The
// holder renews its lease every LockTTL/4; a waiter takes over a lease once
// it has expired, as judged by the database server's clock alone. A holder
// learns that it lost its lease: the context returned by
// [Storage.LockContext] is cancelled, and Store and Delete called with that
// context are fenced, that is, checked against the lease in the same
// statement, so a holder that lost its lease cannot overwrite a newer value.
//
// [Storage.Watch] uses LISTEN/NOTIFY, so every node learns at once that a
// certificate was renewed, whichever node renewed it.
//
// # Concurrency
//
// A [Storage] is safe for concurrent use. Its calls share a pool of
// connections (pgxpool) sized and aged by the DSN's pool parameters
// ([Config.DSN]: pool_max_conns, 4 by default, pool_max_conn_idle_time,
// pool_max_conn_lifetime, …); Watch uses one connection of its own. It
// runs one goroutine for the pool's health check, one per held lock (its
// heartbeat) and one for the listener; [Storage.Close] stops them and
// waits for them. [Storage.PoolStats] reports the pool's statistics
// (package metrics exports them).
//
// # Errors
//
// Errors are prefixed "postgres: " and wrap their cause. A missing key wraps
// [io/fs.ErrNotExist], and only a missing key does: a failed connection is
// reported as itself. A connection idle for more than a second is pinged
// before a call uses it, and replaced if it is broken. A call whose
// connection breaks under it (a restarted server, pg_terminate_backend, a
// failover) makes the pool drop every idle connection, and runs once more
// on a new connection (Append only if its COPY cannot have reached the
// server); it fails if that fails too. Each Store and Delete is one
// statement, so a dropped connection never leaves a value half-written,
// and running one twice is as running it once. A lost or fenced lease is reported as
// [storage.ErrLockLost]; a schema newer than the code as [ErrSchemaTooNew].
//
// # Testing
//
// The tests need a real server: set TLSMINT_TEST_POSTGRES to the DSN of a
// disposable database (.ci/run starts a throwaway PostgreSQL 15 cluster and
// sets it). Without it they are skipped with a message (and fail instead
// when CI=true, as .ci/run sets). Each test works
// under a random table prefix and drops its tables at the end. For fast
// tests, use a short [Config.LockTTL] (one second) and
// [Config.LockPollInterval] (ten milliseconds).
package postgres
