// Package relay is an ACME server (RFC 8555) for the ACME clients of an
// organisation — certbot, lego, acme.sh, Caddy, Traefik, tlsmint — that
// obtains each certificate from upstream CAs with the relay's own
// accounts, through package acme.
//
// Clients use the relay unmodified, as they would any CA: they register
// (with an External Account Binding key of their [Tenant]), order, prove
// control of the names to the relay (http-01, tls-alpn-01 or dns-01,
// checked by the relay's own [Validator], or vouched for by the tenant's
// [Policy]), and finalize with their CSR. The relay then orders the same
// names from an [Upstream], proves control there with its own solvers,
// finalizes with the client's CSR (the client keeps its private key) and
// hands the upstream's chains to the client ([Server.Routes] choose the
// upstreams of some names or addresses). With a read-only
// solvers.DNSPersist01 as an upstream's solver (no DNS credentials), an
// order whose dns-persist-01 records are missing fails with an
// unauthorized problem naming the records to publish. Renewal
// information, the "replaces" of a renewal and revocations are passed
// upstream.
// [Server.Certificates] lists the certificates issued, for a status page
// (package statuspage's Handler.Sources).
//
// docs/relay.md lists exactly what is implemented and what is not.
//
// # Getting started
//
//	up := &relay.Upstream{
//		Client:  &acme.Client{DirectoryURL: acme.LetsEncryptProduction, Key: relayKey},
//		Account: acme.Account{TermsOfServiceAgreed: true},
//		Solvers: map[string]acme.Solver{acme.ChallengeDNS01: dnsSolver},
//	}
//	srv := &relay.Server{Storage: store, BaseURL: "https://acme.internal.example", Upstreams: []*relay.Upstream{up}, AdminToken: token}
//	defer srv.Close()
//	err := srv.PutTenant(ctx, relay.Tenant{ID: "web", Policy: relay.Policy{Names: []string{"web.example.com"}}})
//	eab, err := srv.NewEABKey(ctx, "web") // hand eab.KeyID and the MAC key to the team
//	go http.ListenAndServe("127.0.0.1:8081", srv.AdminHandler())
//	hs := &http.Server{Addr: ":443", Handler: srv, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute}
//	err = hs.ListenAndServeTLS("relay.crt", "relay.key")
//
// The Server bounds every body (MaxBodySize) but not how slowly a client
// sends it: the http.Server that serves it should set ReadHeaderTimeout
// and ReadTimeout, as `tlsmint relay` does (its read_timeout), so that a
// client trickling a request cannot hold a connection for ever.
//
// # Strictness
//
// Every request is checked as Boulder and Pebble check it: Content-Type
// application/jose+json, a body of at most MaxBodySize, the flattened JWS
// serialization with one signature and no unprotected header, an "alg"
// matching the key (ES256, ES384, RS256; ECDSA P-256/P-384 and RSA
// 2048/3072/4096 keys), exactly one of "jwk" (newAccount, revokeCert) and
// "kid" (everything else), a nonce issued by this Server (or, with
// SharedNonces, by any replica on the storage) and used once,
// and a "url" equal to the request's URL. Identifiers, contacts and CSRs
// are checked as strictly before anything is stored or sent upstream.
//
// # Errors
//
// Refusals are RFC 7807 problem documents of the RFC 8555 types with
// their HTTP statuses (badNonce 400, unauthorized 403, rateLimited 429
// with Retry-After, …), each with a fresh Replay-Nonce. The Go API
// ([Server.PutTenant] and friends) returns errors matching
// [ErrInvalidTenant], [ErrNoTenant] and [ErrNoEABKey] with errors.Is.
//
// # State
//
// Accounts, orders, authorizations, certificates, tenants, EAB keys,
// rate-limit counters and upstream back-offs live in the
// [storage.Storage], under "relay/", so a restarted Server, or another
// replica on the same storage, carries on. Nonces live in memory (bounded
// by MaxNonces): they do not survive a restart and are valid only at the
// process that issued them — unless [Server.SharedNonces] is set, which
// makes them valid at every replica on the storage (a MAC under a key in
// the storage, and a record of each redeemed nonce, so each is accepted
// once by all the replicas together). What has ended is deleted by a
// background sweeper ([Server.Retention], [Server.Sweep]): orders that
// ended without a certificate a week after they expired, certificates a
// month after their NotAfter, rate records after their window.
//
// # Security
//
// EAB MAC keys are stored with the rest (0600 files) and never logged or
// shown after they were minted; keys, MACs and nonces never reach a log
// or an audit record. The administration API needs a bearer token.
// Clients may be asked for certificates (mTLS): [Server.RequireClientCert]
// refuses requests without a verified one, and a tenant's
// [Policy.ClientNames] binds its accounts to its client certificates. The
// Validator connects to no reserved address (loopback, link-local,
// private, unique local, …), checked on the address of every connection
// it makes, redirects included, unless the tenant's
// [Policy.ValidationTargets] allow its range: a relay validating names
// inside the organisation's network lists them there, tenant by tenant.
//
// # Concurrency
//
// A [Server] is safe for concurrent use. Changes to one object are made
// under its storage lock. [Server.Close] stops background issuances and
// waits for them.
//
// # Testing
//
// The package's tests run the relay in front of the in-process Pebble
// (internal/testpebble), with tlsmint's acme.Client, lego and (when
// installed) certbot as downstream clients, hostile JWS, identifiers and CSRs, hostile
// validation targets, and replicas sharing storage.
package relay
