// Package acme is a typed client for the ACME protocol (RFC 8555) with
// tls-alpn-01 (RFC 8737), IP identifiers (RFC 8738), ACME Renewal
// Information (RFC 9773), certificate profiles and External Account Binding.
//
// Every object of the protocol is a Go type ([Directory], [Account],
// [Order], [Authorization], [Challenge], [RenewalInfo], [Problem]) and every
// request a method of [Client]. [Client.Obtain] runs the whole issuance flow
// through [Solver]s, so the package is usable on its own to build ACME tools.
//
// # Getting started
//
//	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
//	c := &acme.Client{DirectoryURL: acme.LetsEncryptStaging, Key: key}
//	if _, err := c.Register(ctx, acme.Account{TermsOfServiceAgreed: true}); err != nil { ... }
//	certKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
//	cert, err := c.Obtain(ctx, acme.ObtainRequest{
//		Identifiers: acme.DNSNames("example.com"),
//		CertKey:     certKey,
//		Solvers:     map[string]acme.Solver{acme.ChallengeHTTP01: mySolver},
//	})
//
// The lower-level flow is [Client.NewOrder], [Client.GetAuthorization],
// [Client.AcceptChallenge], [Client.WaitAuthorization],
// [Client.FinalizeOrder] and [Client.FetchCertificate]; besides, there are
// pre-authorization ([Client.NewAuthorization]), an account's orders list
// ([Client.ListOrders]), account updates, key rollover, deactivation,
// revocation and ARI ([Client.RenewalInfo]).
//
// # Challenge types
//
// Besides http-01, dns-01 and tls-alpn-01, the client knows the ACME
// working group's two DNS drafts: dns-account-01
// (draft-ietf-acme-dns-account-label: the dns-01 value under
// [Challenge.DNSAccount01TXTRecordName], a label derived from the account
// URL, so that independent clients can validate one name at once) and
// dns-persist-01 (draft-ietf-acme-dns-persist: one long-lived record at
// [Challenge.DNSPersist01RecordName] naming one of the challenge's
// IssuerDomainNames and the AccountURI; it has no token). [Client.Obtain]
// prefers dns-persist-01, then http-01, tls-alpn-01, dns-account-01 and
// dns-01, among the types it has a [Solver] for. It hands a solver only a
// challenge it can answer: a dns-persist-01 challenge that passes
// [Challenge.CheckDNSPersist01], any other with a token. Challenges of
// types it does not know, or without a token, are kept (or dropped, when
// they do not even decode) and never make an authorization unusable.
//
// Registration needs the account holder's explicit agreement to the CA's
// terms of service (Account.TermsOfServiceAgreed); without it
// [Client.Register] fails with [ErrTermsNotAgreed], naming the terms' URL,
// before any request.
//
// # Polling
//
// Orders and authorizations are polled on a schedule learned from the
// server: the client remembers how long this CA recently took to validate
// and to finalize ([Client.PollTimings]) and polls first at about that
// time, so a CA that validates in milliseconds is not kept waiting and one
// that takes seconds is not asked ten times. Without history the first
// wait is PollInterval, growing by half. Retry-After is always obeyed. An
// authorization left pending while a challenge carries an error ends the
// wait with the CA's problem: at once when the challenge is pending again
// (step-ca's way of reporting a failed validation), after
// [ChallengeErrorGrace] when it is processing (a CA retrying it).
//
// # Concurrency
//
// A [Client] is safe for concurrent use. It fetches the directory once and
// keeps one pool of nonces, fed by every response's Replay-Nonce; a
// newNonce request is made only when the pool is empty. A badNonce answer
// is retried transparently with a fresh nonce, up to ten attempts in all.
//
// # Errors
//
// Problem documents from the server decode into one type, [*Problem]. Match
// a kind with errors.Is against the Err* sentinels (errors.Is(err,
// acme.ErrRateLimited)) — the comparison ignores the spelling of the type's
// namespace — and read details with errors.As. Error responses without a
// problem document become a *Problem with the HTTP status, typed
// rateLimited for 429 and serverInternal for 5xx. Retry-After is read in
// both of its forms and clamped to [MinRetryAfter, MaxRetryAfter].
//
// # Untrusted input
//
// Every response body is size-limited, JSON is decoded into typed structs,
// every URL the server hands out must be absolute https, certificate chains
// are capped in length, and every call takes a context and honours it.
// Redirects are never followed, whatever the HTTPClient's CheckRedirect
// says: a 3xx is an [ErrRedirect] naming its target. Text from the CA
// (problem details, subproblems) is stripped of control characters and
// capped ([MaxProblemDetail]) before it reaches an error or a log. The
// External Account Binding MAC key is redacted in every printed form.
//
// # Testing
//
// The package's tests run every operation against Let's Encrypt's Pebble CA
// in-process (internal/testpebble), with real http-01 validation, plus a
// fault-injecting wrapper for malformed and hostile responses.
package acme
