// Command tlsmint is an ACME client for operators, built on the tlsmint
// library: it registers and manages accounts, obtains, renews and revokes
// certificates, shows what a storage holds and what the audit trail
// recorded, checks what a server actually serves, and imports the
// certificates of golang.org/x/crypto/acme/autocert and certmagic, so
// that a migration re-orders nothing. tlsmint relay runs the ACME relay
// of package relay from a JSON configuration file (docs/relay.md), and
// tlsmint dev-ca a local test CA to try all of it against.
//
// Usage:
//
//	tlsmint account register --email ops@example.com --accept-tos
//	tlsmint obtain example.com www.example.com --http :80
//	tlsmint obtain example.com --storage /var/lib/tlsmint --tls-alpn :443
//	tlsmint obtain '*.example.com' --dns
//	tlsmint obtain '*.example.com' example.com --dns-persist
//	tlsmint renew --cert example.com.crt --key example.com.key --http :80
//	tlsmint ari example.com.crt
//	tlsmint revoke example.com.crt --reason keyCompromise --key example.com.key
//	tlsmint certs list --storage /var/lib/tlsmint
//	tlsmint certs show example.com --storage postgres://tlsmint@db/tlsmint --json
//	tlsmint audit --storage /var/lib/tlsmint --name example.com --since 24h
//	tlsmint ratelimits --storage /var/lib/tlsmint
//	tlsmint check example.com:443 --warn 14d
//	tlsmint import autocert /var/cache/autocert --storage /var/lib/tlsmint
//	tlsmint import certmagic ~/.local/share/certmagic --storage /var/lib/tlsmint
//	tlsmint relay --config /etc/tlsmint/relay.json
//	tlsmint relay tenant add web --config /etc/tlsmint/relay.json --name web.example.com
//	tlsmint relay eab mint web --admin http://127.0.0.1:8081
//	tlsmint dev-ca --dir ./dev   # a local test CA; . ./dev/env for the others
//
// Every command has --help with examples. Flags can also be set from
// environment variables (TLSMINT_CA, TLSMINT_CA_ROOTS, TLSMINT_STORAGE,
// TLSMINT_ACCOUNT_KEY, …; see docs/cli.md). The External Account Binding
// MAC key is read from a file or from TLSMINT_EAB_HMAC, never from the
// command line.
//
// Exit codes: 0 success; 1 the operation failed (the CA refused, the
// network, a file); 2 the command line is wrong (unknown flag, bad value,
// a missing confirmation such as --accept-tos); 3 check found a problem
// (expiring within --warn, expired, revoked, wrong name, chain not
// verifying, unreachable); 130 interrupted by SIGINT or SIGTERM.
//
// main is a thin wrapper around run, which tests call end to end against
// the in-process test CA.
package main
