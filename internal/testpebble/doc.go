// Package testpebble runs Let's Encrypt's Pebble ACME test CA in-process,
// together with a mock DNS server, for hermetic tests, examples and tlsmint
// dev-ca (a local CA for trying the command): real http-01, tls-alpn-01 and
// dns-01 validation happen on loopback, with no network and no external
// process.
//
// # Getting started
//
//	ca, err := testpebble.New(testpebble.Options{})
//	if err != nil {
//		t.Fatal(err)
//	}
//	defer ca.Close()
//	client := &acme.Client{DirectoryURL: ca.DirectoryURL(), HTTPClient: ca.HTTPClient(), Key: key}
//
// The ACME API is served over HTTPS on 127.0.0.1 with a fresh self-signed
// certificate that [CA.HTTPClient] and [CA.TLSRoots] trust. Certificates the
// CA issues chain to [CA.Roots] (verify them with [CA.RootPool]).
//
// # Validation
//
// Pebble's validation authority resolves every name through the CA's
// [DNSServer], which answers A 127.0.0.1 for every name and no AAAA, so the
// validation authority connects to 127.0.0.1:[CA.HTTPPort] for http-01 and
// 127.0.0.1:[CA.TLSPort] for tls-alpn-01; a test serves its solver there.
// IP identifiers are not resolved: the validation authority connects to the
// address itself. For dns-01 it asks the DNS server for TXT records at
// _acme-challenge.<name>, over TCP; the server follows CNAMEs for it.
// Each challenge is validated three times concurrently (Pebble imitates
// multi-perspective validation), so a solver sees three requests.
//
// By default the validation authority does not sleep before validating,
// Pebble rejects no valid nonce and reuses no authorization: see [Options]
// for Pebble's other behaviours.
//
// # Faults and counting
//
// [Options.Wrap] wraps the ACME handler to inject faults per request. A
// running CA can also be taken down ([CA.SetDown]: 503 everywhere, or
// connections refused), rate limited per endpoint ([CA.RateLimit]: 429 with
// Retry-After) and reset as if its database were lost ([CA.Reset]: every
// account forgotten, same URL and roots). [CA.Requests] counts the requests
// per ACME endpoint, including those that faults or the wrapper answer, so
// tests can check how many round trips a flow takes; [CA.RequestLog] gives
// the time, endpoint, method and status of each, so tests can check that
// nothing was sent before a Retry-After expired.
//
// # Concurrency
//
// A [CA] and a [DNSServer] are safe for concurrent use, and several CAs can
// run at once: each has its own ports, database and DNS server. Pebble reads
// its settings from environment variables when it is constructed; [New] sets
// and restores them under a lock, so tests that construct CAs in parallel do
// not interfere (but tests must not set those variables themselves).
//
// # Limits
//
// [CA.Close] cannot stop Pebble's validation authority goroutine, so a CA
// cannot run inside a testing/synctest bubble or under a goroutine leak
// checker. Pebble's quirks (no Location header on finalize, Retry-After as
// seconds or as a date at random) are Pebble's and are kept.
package testpebble
