// Package tlsmint is automatic HTTPS for Go servers over ACME.
//
// tlsmint obtains certificates from an ACME CA (Let's Encrypt, ZeroSSL,
// Google Trust Services, a private step-ca, …) the first time a name is
// needed, stores them, renews them before they expire, and serves them from
// tls.Config.GetCertificate.
//
// The module is made of small packages that depend only downward:
//
//   - acme: a typed, complete ACME client (RFC 8555, RFC 8737, RFC 8738,
//     RFC 9773, profiles, External Account Binding) with the whole issuance
//     flow in acme.Client.Obtain, usable on its own.
//   - solvers: challenge solvers for http-01, tls-alpn-01, dns-01 and
//     dns-account-01 over any libdns provider, and dns-persist-01 (one
//     long-lived record, created through a provider or read-only).
//   - storage: the Storage interface with cluster-wide locks, the file
//     backend and an in-memory one; storage/postgres shares certificates
//     across a fleet; storage/storagetest is the conformance suite.
//   - record: the records several packages share — an audit record and
//     its filter, a certificate's state, a DNS record to publish — owned
//     by none of them; it imports no other package of the module.
//   - autotls: the Manager — lazy issuance in GetCertificate, background
//     renewal (its own windows or the CA's ARI), retries, issuers with
//     fallback, host policy and the one-line listener.
//   - audit: the ACME audit trail in storage, its queries and the
//     rate-limit picture.
//   - metrics: the Prometheus collector of a Manager (client_golang lives
//     only there).
//   - statuspage: the HTML and JSON status page of a Manager's
//     certificates.
//   - watchdog: probes what listeners actually serve.
//   - migrate: imports the certificates of autocert and certmagic into a
//     tlsmint storage, so a migration re-orders nothing.
//   - cmd/tlsmint: the tlsmint command, an ACME client for operators built
//     on the packages above (see docs/cli.md).
//   - relay: an ACME server for an organisation's own ACME clients that
//     obtains their certificates upstream with its own accounts.
//
// The examples folder has runnable programs; examples/local runs the whole
// flow offline against an in-process test CA.
package tlsmint
