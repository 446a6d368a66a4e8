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
// The page lists the managed certificates a page at a time (see
// "Pages" below), the soonest expiry first, each with
// its [State] (as a word and a colour), days left, next renewal and why,
// the CA's ARI window, issuer, last error and back-off; a timeline of
// expiries and renewals drawn as inline SVG; and, with an [audit.Log], the
// recent ACME activity, the rate-limit picture, what a watchdog found
// clients are served (its probe records: set watchdog.Watchdog.AuditLog to
// the same Log) and the nodes of a fleet with what each holds. ?format=json, or an Accept header preferring
// application/json, returns the same data as a [Status].
//
// Above the table, the summary counts every certificate per state, each
// count linking to that state's pages, and, on the first page, "Needs
// attention" lists the first [MaxAttention] revoked, expired and failing
// certificates the first rows do not show. What a watchdog found served
// comes before the ACME activity, whose newest five records are shown and
// the rest collapsed.
//
// # Pages
//
// A view costs what it shows, whatever the number of names: the page
// reads the Manager's snapshot ([autotls.Manager.Snapshot]: one compact
// row per name from the schedule index and memory, shared with every
// other view and with package metrics, rebuilt at most every
// [autotls.SnapshotMaxAge] or twenty times its build time), and loads the
// certificates of only the rows it shows ([autotls.Manager.CertificatesOf]).
// The query parameters, the same for the HTML and the JSON, are:
//
//	state=failing        only the certificates in this State (revoked, expired,
//	                     failing, expiring, pending, ok)
//	limit=50             the page size, 1 to MaxLimit; without it Handler.MaxRows
//	                     (DefaultMaxRows, 100)
//	after=1767225600.example.com
//	                     the cursor of the previous page, Status.Next: the page
//	                     starts after that certificate (see Query.After)
//
// The order is stable — names without a certificate first, then by
// NotAfter, then by name — so a cursor stays valid while certificates
// change: a page after it lists what sorts after it at the time of the
// request (a certificate renewed meanwhile moves towards the end). The
// JSON's total counts the certificates in the state on every page and
// next is the cursor of the next page, absent on the last; counts and the
// state filter judge the Manager's certificates by their snapshot row
// (Status.SnapshotAt), each row shown is judged again when loaded. An
// unknown state, a limit out of range or a malformed cursor is a 400.
// [Handler.Query] returns any page without serving it.
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
// (past the deadline the Manager works to, its
// [record.Certificate].RenewBy; for another source's certificate,
// [autotls.RenewalDeadline]), [StatePending] (a managed name whose first order is under
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
// holds no key material: [record.Certificate] has none. A request
// that [Handler.Authorize] refuses (by default, [LoopbackOnly]: any client
// not on 127.0.0.0/8 or ::1) gets 403 and nothing else, so mounting the page
// on a public listener by mistake leaks nothing.
//
// # Concurrency
//
// A [Handler] is safe for concurrent use once its fields are set. A page
// load reads the Manager's snapshot, loads its rows and, with an audit
// trail, reads the trail of the last [AuditWindow] (twice: for activity
// and nodes, and for rate limits). The loads of the same page that arrive
// while it reads wait for that read, and those within [ShareFor] (a
// second) after it reuse it, so a burst of loads costs one read; the read
// goes on when the load that started it goes away. Handler.Status and
// Handler.Query always read anew (the snapshot is shared still).
//
// # Without serving
//
// Handler.Status returns the first page's data without an HTTP request,
// and Handler.Query any page's, for a command (tlsmint certs list) or a
// report.
//
// # Testing
//
// The tests run a real Manager against the in-process test CA, render the
// page in headless Chromium (skipped when /usr/bin/chromium is missing,
// failed instead when CI=true), check its HTML and accessibility, and
// compute the contrast of the state colours against WCAG AA.
package statuspage
