// Package relay is an ACME server (RFC 8555) for the ACME clients of an
// organisation — certbot, lego, acme.sh, Caddy, Traefik, tlsmint — that
// obtains each certificate from upstream CAs with the relay's own
// accounts, through package acme.
//
// Clients use the relay unmodified, as they would any CA: they register
// (with an External Account Binding key of their tenant), order, prove
// control of the names to the relay (http-01, tls-alpn-01 or dns-01,
// validated by the relay's own [Validator], or vouched for by the tenant's
// policy), and finalize with their CSR. The relay then orders the same
// names upstream, proves control there with its own solvers, finalizes
// with the client's CSR (the client keeps its private key) and hands the
// upstream's chains to the client.
//
// # Getting started
//
//	up := &relay.Upstream{
//		Client:  &acme.Client{DirectoryURL: acme.LetsEncryptProduction, Key: relayKey},
//		Account: acme.Account{TermsOfServiceAgreed: true},
//		Solvers: map[string]acme.Solver{acme.ChallengeDNS01: dnsSolver},
//	}
//	srv := &relay.Server{Storage: storage.Dir("/var/lib/relay"), BaseURL: "https://acme.internal.example", Upstreams: []*relay.Upstream{up}, AdminToken: token}
//	defer srv.Close()
//	srv.PutTenant(ctx, relay.Tenant{ID: "web", Policy: relay.Policy{Names: []string{"web.example.com"}}})
//	eab, _ := srv.NewEABKey(ctx, "web") // hand eab.KeyID and the MAC key to the team
//	go http.ListenAndServeTLS(":443", certFile, keyFile, srv)
//	go http.ListenAndServe("127.0.0.1:8081", srv.AdminHandler())
//
// # Strictness
//
// Every request is checked as Boulder and Pebble check it: Content-Type
// application/jose+json, a body of at most MaxBodySize, the flattened JWS
// serialization with one signature and no unprotected header, an "alg"
// matching the key (ES256, ES384, RS256; ECDSA P-256/P-384 and RSA
// 2048/3072/4096 keys), exactly one of "jwk" (newAccount, revokeCert) and
// "kid" (everything else), a nonce issued by this Server and used once,
// and a "url" equal to the request's URL. Refusals are RFC 7807 problem
// documents of the RFC 8555 types with their HTTP statuses.
//
// # State
//
// Accounts, orders, authorizations, certificates, tenants, EAB keys and
// rate-limit counters live in the [storage.Storage], under "relay/", so a
// restarted Server carries on. Nonces live in memory (bounded by
// MaxNonces) and do not survive a restart.
//
// # Concurrency
//
// A [Server] is safe for concurrent use. Changes to one object are made
// under its storage lock. [Server.Close] stops background issuances.
package relay
