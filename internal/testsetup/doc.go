// Package testsetup holds the test environment the packages' tests share:
// the in-process CA of internal/testpebble started for one test, keys,
// contexts, loopback servers, certificates made on the spot, ACME clients
// of the CA, and Managers wired to the CA's challenge ports.
//
// Every helper takes the test's testing.TB, calls its Helper method, ends
// the test with Fatal when its set-up fails, and registers the clean-up of
// what it started with Cleanup: nothing it returns needs closing.
//
// # Import rule
//
// The package imports acme, autotls and storage, so the internal tests of
// those packages (package acme, package autotls, package storage) cannot
// use it; their external tests (package acme_test and so on) can.
package testsetup
