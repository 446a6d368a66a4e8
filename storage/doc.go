// Package storage defines where tlsmint keeps certificates, private keys,
// ACME accounts and renewal state, and how a fleet of servers sharing them
// makes sure that only one node orders each certificate.
//
// The [Storage] interface has six methods: Store (atomic), Load, Delete,
// List, Stat and Lock (a cluster-wide lock that expires when its holder
// dies). Its documentation states the exact semantics every backend
// provides, checked by the conformance suite in package storagetest. Four
// optional interfaces add to it: [Watcher], for backends that can report
// changes as they happen, [LockerWithContext], for backends that can tell
// a holder that it lost its lock, [Journal], for backends that keep
// append-only logs natively (the audit trail): FileStorage in JSON-lines
// files rotated every hour under .journal/, PostgreSQL in a table, and
// [PoolReporter], for backends that keep a pool of connections
// (PostgreSQL), whose statistics package metrics exports.
//
// This package has two backends:
//
//   - [FileStorage], created by [Dir]: one file per value under a folder. It
//     is the default, and it also works for several processes sharing a
//     folder, locally or over a network file system; its Watch polls.
//   - [MemoryStorage], created by [NewMemory]: everything in memory, for
//     tests and for programs that need nothing persisted.
//
// Package storage/postgres keeps everything in a PostgreSQL database, for
// fleets.
//
// # Getting started
//
// Open a folder and use it:
//
//	s := storage.Dir("/var/lib/myserver/tlsmint")
//	err := s.Store(ctx, "certificates/ca/example.com/example.com.crt", pemBytes)
//	data, err := s.Load(ctx, "certificates/ca/example.com/example.com.crt")
//
// To do something once across a fleet, take a lock, and do the work under
// the lock's context so that it stops if the lock is lost:
//
//	lockCtx, unlock, err := storage.LockContext(ctx, s, "issue/example.com")
//	if err != nil {
//		return err
//	}
//	defer unlock()
//	// ... obtain the certificate under lockCtx, then Store it ...
//
// # Keys
//
// Keys are slash-separated paths such as
// "certificates/acme-v02.api.letsencrypt.org-directory/example.com/example.com.json".
// [CheckKey] states which keys are valid: no ".", ".." or empty segments, no
// leading or trailing slash, no control characters or backslashes, at most
// [MaxKeyLen] bytes. Keys are case-sensitive on every backend.
//
// The file backend maps a key to a path under its folder through an
// [os.Root], so no key and no planted symbolic link can lead outside it.
// Within a segment, a-z, 0-9, '-', '_' and '.' (but not a leading '.') are
// kept and every other byte, upper-case letters included, becomes %xx with
// lower-case hex; a segment that has keys below it is a folder whose name
// ends in '+'; escaped segments longer than 200 bytes are cut into folders
// ending in '&'. So "certificates/ca/Example.com.crt" lives in
// "certificates+/ca+/%45xample.com.crt". The mapping is injective, can be
// reversed (List reads the folder names back), and produces only lower-case
// names, so it is safe on case-insensitive file systems. Names starting with
// '.' are the backend's own: temporary files and the ".locks" folder.
//
// # Concurrency
//
// Every backend is safe for concurrent use by many goroutines, and the file
// and PostgreSQL backends by many processes. Store is atomic: readers see
// the old value or the new one, never a mixture. Locks give mutual exclusion
// while their holders are alive; a holder that dies stalls the others for at
// most the backend's expiry period (FileStorage.StaleAfter, 10 seconds by
// default). The documentation of [Storage] lists what a caller may and may
// not assume when a holder dies or stalls.
//
// A [FileStorage] starts one goroutine per held lock, for its heartbeat;
// unlock stops it, and [FileStorage.Close] releases every lock still held.
// It also starts one goroutine per [FileStorage.Watch], which polls the
// folder (one List and one Stat per key every WatchInterval, 1 second by
// default) until its context is done or Close stops it.
//
// # Errors
//
// Errors are wrapped with %w and prefixed "storage: ". Match them with
// [errors.Is]:
//
//   - [io/fs.ErrNotExist] from Load and Stat means the key is missing, and
//     only that: an unreadable file or a lost connection is a different
//     error;
//   - [ErrInvalidKey] means a key or lock name failed [CheckKey];
//   - [ErrLockLost] means a held lock was lost (also the cause of the
//     context returned by [LockContext]);
//   - [ErrClosed] means the backend was closed;
//   - [context.Canceled] and [context.DeadlineExceeded] come from the
//     context given to the call.
//
// # Testing
//
// Use [NewMemory] in tests that need a Storage, or [Dir] with
// [testing.T.TempDir]. A FileStorage for tests should have short lock
// periods, for example StaleAfter 500ms and PollInterval 10ms. A new backend
// should pass storagetest.Run, the conformance suite; the tests of this
// package run it on both backends here, and add crash tests that kill a
// process in the middle of a write and while it holds a lock, and tests
// that make the disk full at every byte and step of a Store, a Lock, a
// lock refresh and a journal Append in turn (storagetest.WithFullDisk).
package storage
