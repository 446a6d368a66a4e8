// Package statuspage serves a status page of an [autotls.Manager]'s
// certificates: what an operator needs at a glance, as HTML for a browser
// and as JSON for scripts.
//
// # Getting started
//
// Mount a [Handler] on a listener only operators reach; by default it
// answers loopback clients only:
//
//	http.Handle("/status", &statuspage.Handler{Manager: m, Audit: trail})
//
// The page lists the managed certificates, the soonest expiry first (past
// [Handler.MaxRows], 1,000 by default, only those that are not ok, with a
// count of those left out; the JSON lists every one), with
// its [State] (as a word and a colour), days left, next renewal and why,
// the CA's ARI window, issuer, last error and back-off; a timeline of
// expiries and renewals drawn as inline SVG; and, with an [audit.Log], the
// recent ACME activity, the rate-limit picture, what a watchdog found
// clients are served (its probe records: set watchdog.Watchdog.AuditLog to
// the same Log) and the nodes of a fleet with what each holds. ?format=json, or an Accept header preferring
// application/json, returns the same data as a [Status].
//
// [Handler.Sources] add other lists of certificates, each a
// [CertificateSource] (an [autotls.Manager] is one): an ACME relay's
// relay.Server lists the certificates it issued downstream, each with its
// tenant, which the page shows, and whether it was revoked.
//
// # States
//
// Each certificate gets one [State], judged at the Handler's Now:
// [StateExpired], [StateFailing] (its last attempt failed), [StateExpiring]
// (past the point the Manager renews at: a third of the lifetime left, half
// for lifetimes of ten days or less, a tenth while the CA's ARI window still
// lies ahead), [StatePending] (a managed name whose first order is under
// way), [StateRevoked] (a relay's certificate revoked through it, or one
// whose serial a watchdog's newest probe record found revoked) or
// [StateOK]. A state other than ok means the renewal plan did not
// work out.
//
// # Security
//
// The page is self-contained: server-rendered with html/template, its
// stylesheet embedded and inlined, allowed by hash in a
// Content-Security-Policy of default-src 'none'; no script, no external
// asset, no CDN. Every name, error text and URL — the CA's and the
// client's words included — is escaped. Responses carry
// X-Content-Type-Options: nosniff and Cache-Control: no-store. The data
// holds no key material: [autotls.CertificateInfo] has none. A request
// that [Handler.Authorize] refuses (by default, [LoopbackOnly]: any client
// not on 127.0.0.0/8 or ::1) gets 403 and nothing else, so mounting the page
// on a public listener by mistake leaks nothing.
//
// # Concurrency
//
// A [Handler] is safe for concurrent use once its fields are set. A page
// load reads the Manager's certificates and, with an audit trail, the
// trail of the last [AuditWindow] (twice: for activity and nodes, and for
// rate limits). The loads that arrive while it reads wait for that read,
// and those within [ShareFor] (a second) after it reuse it, so a burst of
// loads costs one read; the read goes on when the load that started it
// goes away. Handler.Status always reads anew.
//
// # Without serving
//
// Handler.Status returns the same data without an HTTP request, for a
// command (tlsmint certs list) or a report.
//
// # Testing
//
// The tests run a real Manager against the in-process test CA, render the
// page in headless Chromium (skipped when /usr/bin/chromium is missing,
// failed instead when CI=true), check its HTML and accessibility, and
// compute the contrast of the state colours against WCAG AA.
package statuspage
