// Package solvers answers ACME challenges for [acme.Client.Obtain]:
// http-01 with [HTTP01], tls-alpn-01 (RFC 8737) with [TLSALPN01], dns-01
// and dns-account-01 (draft-ietf-acme-dns-account-label) over any libdns
// provider with [DNS01], and dns-persist-01 (draft-ietf-acme-dns-persist)
// with [DNSPersist01]. Each is an [acme.Solver]; [DNS01] and
// [DNSPersist01] are also [acme.Waiter]s, so Obtain submits their
// challenges only once the record is visible at the zone's authoritative
// nameservers.
//
// # Getting started
//
// http-01: serve the solver on port 80, alone or in front of the
// application, and give it to Obtain:
//
//	h := &solvers.HTTP01{}
//	go http.ListenAndServe(":80", h.Middleware(app))
//	cert, err := client.Obtain(ctx, acme.ObtainRequest{
//		Identifiers: acme.DNSNames("example.com"),
//		CertKey:     key,
//		Solvers:     map[string]acme.Solver{acme.ChallengeHTTP01: h},
//	})
//
// A fleet behind a load balancer shares its tokens through storage, so that
// whichever node the CA reaches can answer:
//
//	h := &solvers.HTTP01{Store: solvers.StorageTokens{Storage: store}}
//
// The node that presented a token also keeps it in memory and answers it
// from there, so a storage outage during the validation fails only the
// requests that reach the other nodes.
//
// tls-alpn-01: chain the solver's hook into the server's tls.Config and
// offer the acme-tls/1 protocol, or give it a listener of its own with
// [TLSALPN01.TLSConfig]:
//
//	s := &solvers.TLSALPN01{}
//	cfg.GetCertificate = s.Wrap(cfg.GetCertificate)
//	cfg.NextProtos = append(cfg.NextProtos, acme.ALPNProto)
//
// dns-01 (the only way to a wildcard): give [DNS01] a libdns provider, any
// type with AppendRecords and DeleteRecords:
//
//	d := &solvers.DNS01{Provider: &cloudflare.Provider{APIToken: token}}
//	Solvers: map[string]acme.Solver{acme.ChallengeDNS01: d}
//
// dns-account-01: the same solver, under the account's label, so that
// several ACME clients can validate one name at once:
//
//	Solvers: map[string]acme.Solver{acme.ChallengeDNSAccount01: d, acme.ChallengeDNS01: d}
//
// dns-persist-01: one long-lived record names the CA and the account
// ([PersistRecord]); with a Provider it is created once and never deleted,
// and without one (read-only, no DNS credentials) Present fails with a
// [*PersistRecordError] naming the exact record to create until it is
// published:
//
//	p := &solvers.DNSPersist01{} // read-only
//	Solvers: map[string]acme.Solver{acme.ChallengeDNSPersist01: p}
//
// # Concurrency
//
// Every solver is safe for concurrent use: Obtain presents the challenges of
// an order at once, and the handler and TLS hooks run on server goroutines
// while challenges come and go. A solver's fields must not change after
// first use, and solvers must not be copied after first use. No solver
// starts a goroutine of its own that outlives a call.
//
// The serving paths are cheap for what is not a challenge: [HTTP01.Handle]
// costs one string comparison for a request outside
// /.well-known/acme-challenge/, and the [TLSALPN01.Wrap] hook two
// comparisons for a ClientHello that does not offer only acme-tls/1; neither
// allocates.
//
// # Errors
//
// Errors are prefixed "solvers: " and wrap their cause. Present refuses a
// malformed token with [ErrInvalidToken] (such a token is never stored or
// served) and an identifier it cannot prove with [ErrInvalidIdentifier].
// [DNS01.Present] wraps the provider's error, so errors.Is finds it through
// Obtain's error; Obtain then deactivates the order's pending
// authorizations. [DNS01.Wait] fails with [ErrNotPropagated] when the record
// is not visible in time, and the challenge is never submitted. A
// read-only [DNSPersist01] fails before any challenge is submitted with a
// [*PersistRecordError] (errors.Is: [ErrPersistRecordMissing], and
// [ErrPersistUntilPassed] when the record found has ended). A
// tls-alpn-01 hello for a name with no active challenge fails with
// [ErrNoChallenge].
//
// CleanUp runs under a context detached from the caller's cancellation and
// bounded by a timeout, so records are removed even when issuance was
// cancelled. [DNS01.CleanUp] deletes exactly the records the provider
// returned when they were appended, nothing else at the same name; its
// failure is logged and returned, and Obtain logs it without failing the
// issuance. [DNSPersist01.CleanUp] deletes nothing: its record stays.
//
// # By hand
//
// ManualDNS is a DNSProvider for a person: DNS01 with it prints the exact TXT
// record to create, waits until the zone's nameservers answer it, and says
// when it may be deleted.
//
// # Testing
//
// The package's tests obtain real certificates from Let's Encrypt's Pebble
// running in-process (internal/testpebble) with real validation: the
// solvers serve on loopback ports the CA's validation authority connects
// to, and dns-01 records go to the CA's mock DNS server through the libdns
// provider of package [github.com/tlsmint/tlsmint/solvers/dns01test], which
// can also delay visibility to exercise [DNS01.Wait]. Point [DNS01] at a
// mock server with Resolvers and NameserverPort.
package solvers
