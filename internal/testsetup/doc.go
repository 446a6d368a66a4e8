// Package testsetup holds the test environment the packages' tests share:
// the in-process CA of internal/testpebble and its mock DNS server started
// for one test, resolvers that ask that DNS server, keys, contexts,
// loopback servers, log buffers, certificates and certificate authorities
// made on the spot, ACME clients of the CA, and Managers of the CA with the
// challenge servers that answer its validations for them.
//
// Every helper that takes the test's testing.TB calls its Helper method,
// ends the test with Fatal when its set-up fails, and registers the
// clean-up of what it started with Cleanup: nothing it returns needs
// closing.
//
// # Import rule
//
// The package imports autotls, and with it acme, record, solvers and
// storage, so the internal tests of those packages (package autotls,
// package acme, and so on) cannot use it; their external tests (package
// autotls_test, package acme_test, ...) can, and so can the tests,
// internal or external, of every other package but internal/testpebble.
package testsetup
