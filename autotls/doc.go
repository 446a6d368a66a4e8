// Package autotls gives any Go server automatic HTTPS: a [Manager] obtains
// certificates from an ACME CA the first time a TLS handshake needs them,
// stores them, renews them before they expire, and serves them from
// [Manager.GetCertificate].
//
// # Getting started
//
// The one-liner listens on :443 for the given names, with Let's Encrypt,
// ECDSA P-256 keys, the user's cache folder and tls-alpn-01; calling it
// accepts Let's Encrypt's terms of service:
//
//	ln, err := autotls.NewListener("example.com", "www.example.com")
//	if err != nil {
//		log.Fatal(err)
//	}
//	log.Fatal(http.Serve(ln, handler))
//
// With a Manager, everything is a field whose zero value is documented:
//
//	m := &autotls.Manager{
//		Hosts:       autotls.HostWhitelist("example.com", "*.example.com"),
//		Email:       "ops@example.com",
//		AcceptTOS:   true, // the operator agrees to the CA's terms of service
//		DNSProvider: provider,
//	}
//	defer m.Close()
//	go http.ListenAndServe(":80", m.HTTPHandler(nil)) // http-01, and redirects to https
//	if err := m.Validate(); err != nil { // TLSConfig cannot report a bad configuration
//		log.Fatal(err)
//	}
//	srv := &http.Server{Addr: ":443", TLSConfig: m.TLSConfig(), Handler: handler}
//	log.Fatal(srv.ListenAndServeTLS("", ""))
//
// # Host policy
//
// Nothing is ever ordered for a name that no policy allows: [Manager.Hosts]
// (for example [HostWhitelist]), names given to [Manager.Manage], or, for
// names not known in advance, [OnDemand]'s decision function within its rate
// limit and cap on orders in flight. Server names are normalised once at the
// edge ([NormalizeName]: IDNA to ASCII, lower case, no trailing dot) and
// invalid ones are refused before storage or the CA is touched. A refused
// name costs no CA request, no storage access and no lock. A client that
// sends no server name (one connecting to an IP address, a health check)
// gets the certificate of [Manager.DefaultServerName], if set, under the
// same rules.
//
// # Concurrency
//
// A Manager is safe for concurrent use. A cached certificate is served
// without a lock and without allocating. On a miss, one issuance per name
// runs at a time across goroutines, and across processes sharing a
// [storage.Storage] through its lock, so a fleet orders each certificate
// once. A handshake waits for an issuance at most HandshakeTimeout, or until
// its client goes away; the issuance goes on either way. Failures are
// remembered per name with a growing backoff, so a name that cannot be
// validated does not reach the CA on every handshake.
//
// Renewal is scheduled, not scanned: one timer for all certificates fires
// when a third of a certificate's lifetime is left, jittered by up to 1 %
// of the lifetime. ACME Renewal Information (ARI, RFC 9773) is not used
// yet: the Manager neither fetches nor stores a CA's suggested window. A
// failed renewal is retried with backoff while the old certificate keeps
// being served. [Manager.Close] stops this work, waits for
// it and releases every lock.
//
// # Errors
//
// GetCertificate's errors wrap [ErrInvalidName], [ErrHostNotAllowed],
// [ErrInvalidConfig], [ErrOnDemandLimited], [ErrBackoff],
// [ErrIssuancePending] or [ErrClosed] for errors.Is, and the CA's
// *acme.Problem for errors.As. [Manager.Validate] reports a configuration
// that cannot obtain certificates before any handshake does.
//
// A panic during an issuance or renewal (in a solver, a DNS provider,
// storage, OnEvent) does not end the process: it becomes that issuance's
// error ("autotls: obtaining NAME: panic: …"), its stack is logged at
// Error, EventFailed is emitted and the name backs off as after any
// failure.
//
// # Events and logs
//
// [Manager.OnEvent] receives typed [Event]s (obtained, renewed, loaded,
// failed) and [Manager.Logger] structured logs; neither ever carries key
// material or account secrets.
//
// # Testing
//
// The package's tests run real TLS handshakes against Let's Encrypt's Pebble
// in-process (internal/testpebble) with real http-01, tls-alpn-01 and dns-01
// validation; examples/local shows the same set-up as a program.
package autotls
