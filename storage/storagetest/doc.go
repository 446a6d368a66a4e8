// Package storagetest is the conformance suite for implementations of
// [storage.Storage]. Every backend in this module passes it, and third-party
// backends can run it from their own tests.
//
// # Getting started
//
// Call [Run] from a test with a function that opens a new client of the
// backend under test:
//
//	func TestConformance(t *testing.T) {
//		dir := t.TempDir()
//		storagetest.Run(t, func(t *testing.T) storage.Storage {
//			return &storage.FileStorage{Path: dir, PollInterval: 10 * time.Millisecond}
//		})
//	}
//
// The suite checks the semantics of every method (atomic Store, not-found
// errors that wrap [io/fs.ErrNotExist], Delete of a missing key, concurrent
// Deletes of sibling keys that all return nil, sorted and recursive List,
// Stat), binary, empty and large values, odd and invalid
// keys, concurrent readers and writers, cancelled contexts, and locks: mutual
// exclusion among many goroutines spread over several independent clients
// (verified with a shared counter), waiting that ends when its context is
// cancelled, and, given [WithCrash], the takeover of a lock whose holder
// vanished, and, given [WithFullDisk], that writes a full disk cuts short
// at any position leave whole values, no lock, and journal appends kept
// all or nothing. Optional interfaces ([storage.Watcher],
// [storage.LockerWithContext]) are tested when the backend implements them.
// For a Watcher, a change made through another client must be reported
// within 10 seconds, so a backend that polls must poll more often than that
// in tests; if its clients implement [io.Closer], the suite closes one to
// check that its watches end, so Close must be safe to call again (from the
// clean-up newStorage registered).
//
// # Concurrency
//
// Run calls newStorage from several goroutines' tests and uses the clients
// it returns concurrently; each client must be safe for concurrent use, as
// [storage.Storage] requires.
//
// # Errors
//
// Failures are reported through the [testing.T] given to Run, one subtest per
// property, with the key and the values involved.
//
// # Testing
//
// The suite takes a few seconds with short lock polling intervals; the lock
// takeover test takes about as long as the backend's expiry period, so
// configure a short one (a second or less) for tests and declare it with
// [WithLockExpiry].
//
// [Benchmark] measures Load, Store and Lock plus unlock of a backend, in
// ops/s, the same way for every backend so their figures compare.
package storagetest
