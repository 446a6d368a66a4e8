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
//		Hosts:     autotls.HostWhitelist("example.com", "*.example.com"),
//		Issuers:   []autotls.Issuer{autotls.LetsEncrypt("ops@example.com")},
//		AcceptTOS: true, // the operator agrees to the CA's terms of service
//		DNS01:     &solvers.DNS01{Provider: provider},
//	}
//	defer m.Close()
//	go http.ListenAndServe(":80", m.HTTPHandler(nil)) // http-01, and redirects to https
//	if err := m.Validate(); err != nil { // TLSConfig cannot report a bad configuration
//		log.Fatal(err)
//	}
//	srv := &http.Server{Addr: ":443", TLSConfig: m.TLSConfig(), Handler: handler}
//	log.Fatal(srv.ListenAndServeTLS("", ""))
//
// # Configuration
//
// Each thing is configured in one place. The Manager's fields come in
// groups, in this order: the names it may obtain (explained under "Host
// policy"), the CAs it orders from and how it reaches them ("Issuers"),
// the challenges it answers ("Challenges"), its storage and memory
// ("Scale", "Storage format"), its limits and timing ("Concurrency",
// "Bounds on orders", "Failures"), and what observes it ("Events and
// logs"). A field's comment says what its zero value means; these
// sections say the rest. What differs from one CA to another — its
// directory, the account's contact address, External Account Binding,
// profile, preferred chain, order bound — is a field of its [Issuer],
// and nowhere else.
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
// sends no server name gets the certificate of [Manager.DefaultServerName],
// if set: clients that connect to an IP address (which RFC 6066 keeps out
// of SNI, so curl to https://192.0.2.1/ sends none), old clients and health
// checks. That name goes through the same normalisation and host policy as
// a server name from the client.
//
// An IP address, in the SNI, in DefaultServerName or given to Manage, is
// obtained (as RFC 8738 allows) only with [Manager.AllowIPCertificates],
// and only if the host policy allows the address in canonical form, as
// [net/netip.Addr.String] prints it (IPv4-mapped addresses as IPv4;
// [NewHostWhitelist] canonicalises its entries).
//
// # Challenges
//
// The Manager solves tls-alpn-01 itself, and http-01 once
// [Manager.HTTPHandler] serves port 80 (DisableTLSALPN01 and DisableHTTP01
// turn them off; [Manager.Validate] reports a Manager left with no
// challenge it can solve). With [Manager.DNS01], a [solvers.DNS01] with a
// libdns Provider (and, if needed, its resolvers, propagation timeout and
// so on), it solves dns-01, which wildcard names need; the solver logs to
// its own Logger, not the Manager's. With PreferDNSAccount01 it answers
// dns-account-01 (draft-ietf-acme-dns-account-label) when the CA offers
// it, and dns-01 otherwise: the record is then at
// _<label>._acme-challenge.<name>, under a label of the account, so that
// other ACME clients validating the same name (a CDN, another fleet) never
// overwrite it. With [Manager.DNSPersist01] it uses dns-persist-01
// (draft-ietf-acme-dns-persist) first for every DNS name, wildcards
// included: one long-lived record at _validation-persist.<name> binds the
// name to the account at the CA, and no later issuance or renewal changes
// DNS. The solver can create the record once through a libdns provider,
// or be read-only, so that the servers hold no DNS credentials at all:
//
//	m := &autotls.Manager{
//		Issuers:          []autotls.Issuer{autotls.LetsEncrypt("ops@example.com")},
//		AcceptTOS:        true,
//		DNSPersist01:     &solvers.DNSPersist01{}, // read-only
//		DisableTLSALPN01: true,
//	}
//	err := m.Manage(ctx, "example.com", "*.example.com")
//
// A read-only Manager looks each record up before ordering (at no cost to
// the CA). While one is missing it says exactly which record to create —
// in EventDNSRecordMissing, in [record.Certificate.DNSRecords], in the log
// and in Manage's error (a [*solvers.PersistRecordError]) — and obtains
// the certificate as soon as the record appears, looking it up every
// DNSRecordCheckInterval. The record names the CA's issuer domain name
// (DNSPersist01.IssuerDomainName, else the one the CA's challenges offer,
// else the CA's first CAA identity) and the account's URL, and carries
// policy=wildcard when a wildcard of the name is managed, so one record
// serves both. When other challenge types are enabled, a name whose
// record is missing is obtained with them meanwhile, and renewed with
// dns-persist-01 once the record exists; when none is, the attempt fails
// without an order.
//
// The types are tried in this order, for each DNS name: dns-persist-01,
// then dns-01 (neither needs a listener), then http-01 once HTTPHandler is
// in use (it works behind load balancers that terminate TLS), then
// tls-alpn-01. A type whose validation failed at the last attempt goes
// last.
//
// # Concurrency
//
// A Manager is safe for concurrent use. A cached certificate is served
// without a lock and without allocating. On a miss, one issuance per name
// runs at a time across goroutines, and across processes sharing a
// [storage.Storage] through its lock, so a fleet orders each certificate
// once. A handshake waits for an issuance at most HandshakeTimeout, or until
// its client goes away; the issuance goes on either way. At most
// MaxHandshakeOrders orders started by handshakes run at once; handshakes
// beyond it wait for a slot within HandshakeTimeout (on-demand names have
// OnDemand's own limits). Failures are
// remembered per name with a growing backoff, so a name that cannot be
// validated does not reach the CA on every handshake.
//
// # Renewal
//
// Every managed certificate — obtained on demand, through Manage, or loaded
// from storage — is renewed in the background at its own time: one timer
// for all certificates fires for what is due, through a bounded queue
// (MaxBackgroundOrders, which all work no handshake waits for shares:
// renewals, Manage, retries after failures, ARI polls, retried Stores), so
// nothing scans the cache and a restart with
// thousands of due certificates sends the CA a bounded number of orders.
// The time is a point, fixed per certificate and uniformly spread, of a
// window that ends when a third of the lifetime is left (half, for
// certificates of ten days or less), or, when the CA offers ACME Renewal
// Information (RFC 9773), of the CA's suggested window — never later than
// when a tenth of the lifetime is left. ARI is first fetched at a random
// point of the six hours after issuance (so that an issuance costs the
// seven requests the protocol needs, and a revocation is still noticed
// within hours); for a certificate without stored renewal information that
// a handshake loads, at a random point of the first six hours too (within
// a minute when a step reloads one); and again at the CA's Retry-After
// (between a minute and a day); it is stored with the
// certificate, so a restart and every node of a fleet reuse it. A window
// in the past (a revocation, a CA incident) renews at once, with
// "replaces" naming the old certificate when the same account obtained it;
// [Manager.Certificates] lists every certificate with its plan, loading
// each one stored (see "Views" for many names): RenewAt, and RenewBy, the
// deadline it works to (the end of the window RenewAt was chosen in, see
// [RenewalDeadline]), by which a status page judges it. Renewals
// that came due while the Manager was down are spread over the hour after
// it starts (a point fixed per name), unless less than a tenth of the
// lifetime is left, so a restart sends the CA no herd.
//
// Every plan — for a certificate obtained here, loaded from storage (one
// another node of the fleet just stored, or this node's before a
// restart) or given new renewal information — is made by one function,
// so every node judges a certificate alike. A renewal that finds a newer
// certificate in storage, however soon that one is due, serves it rather
// than order (its own renewal then names it in "replaces"), and a CA's
// alreadyReplaced answer means that someone else renewed it: the Manager
// serves theirs from storage, and orders without "replaces" only at the
// next attempt, after its back-off, if storage still holds none (an order
// whose node died before storing it).
//
// # Clock
//
// The lifecycle reads the time from one clock: the local one, corrected
// by the CA's when the two disagree. The Manager compares its clock with
// the Date header of the CA's answers to its POST requests and with each
// new certificate's NotBefore; beyond [ClockSkewTolerance] it emits
// [EventClockSkew], logs one line naming the skew, and reads renewal
// times, expiry and back-offs on the CA's time ([Manager.ClockSkew] says
// the skew and the correction). A host whose clock runs weeks ahead thus
// neither renews a new certificate at once nor stops serving one that is
// still valid.
//
// The same clock gives the waits of the lifecycle: the schedule's timer,
// the retry after a failure, the pacing of orders within an issuer's
// MaxOrdersPerMinute, the retries of a storage list at start-up and of a
// storage watch. The package's tests replace it with one they advance,
// so that a week-long outage or a certificate's whole life runs in about
// a second against a real (in-process) CA. It is not an exported Clock
// field: a program has no use for a Manager on any time but the world's —
// a skewed host is what the CA's correction is for — and a field would be
// one more thing to configure, document and keep consistent with that
// correction. Network deadlines
// (the handshake timeout, the time a call to the CA may take, the ACME
// client's own polls and quick retries), the pacing of start-up reads
// from storage, the start-up's wait for the first handshakes' loads to
// pause, the dns-persist-01 record checks (DNSRecordCheckInterval) and
// the flushes of the schedule index stay on the real clock: they measure
// the network's and the storage's time, not the certificates'.
//
// # Bounds on orders
//
// Whatever the reason for an order — a renewal, the CA's renewal
// information, a policy, a skewed clock the Manager could not correct, a
// bug — three bounds hold:
//   - No certificate is renewed before its floor: a twentieth of its
//     lifetime (at most six hours) after it was obtained, by the Manager's
//     clock then (stored with it, so every node and a restart apply the
//     same floor), or after its NotBefore for an imported one. The one
//     exception is a first certificate whose renewal window at the CA has
//     passed (a revocation): it is replaced at once; its replacement is
//     not, however early the CA's window for it.
//   - At most [MaxCertificatesPerName] (3) certificates are obtained for a
//     name within [NameOrderWindow] (24 hours), or within a quarter of its
//     certificate's lifetime when that is shorter, per Manager; past it
//     the name backs off until the oldest leaves the window, and its
//     EventFailed carries an error matching [ErrOrderLimited].
//   - At most [Issuer.MaxOrdersPerMinute] orders a minute go to one CA
//     ([DefaultMaxOrdersPerMinute], 60, with bursts of as many): orders
//     beyond it wait for their turn, at most a minute; past that the CA is
//     skipped (the next issuer is tried) and, when every one is, the name
//     backs off with an error matching ErrOrderLimited.
//
// A failed order is retried after FailureBackoff, doubling to four hours,
// or after the CA's Retry-After when longer, so failures have their own
// bound. Every order is placed under the name's storage lock, taken
// before the CA is asked: a storage that takes no writes takes no lock,
// and nothing is ordered; a storage that takes the lock but cannot read
// the name's stored certificate under it gets no order either (it may
// hold another node's new one), only a back-off; a certificate whose own
// Store fails is served
// from memory and its Store retried, not ordered again before it
// expires (it is not renewed meanwhile). Across restarts
// of a process whose storage keeps failing, that lock, and the CA's own
// limits, are the only bound.
//
// A background order is placed only for a name a handshake could still
// get: one given to Manage, or one the host policy or OnDemand's decision
// (asked with a nil client address) allows now. A name refused then — a
// customer's domain removed from the policy — is not renewed
// (EventNotRenewed): its certificate is served until it expires, the
// policy is asked again meanwhile at shrinking intervals (so that one
// that failed for a moment costs no renewal), and the name is then
// forgotten; its stored certificate stays.
//
// # Scale
//
// A Manager is built for up to millions of names per process. The cache's
// read view is sharded: a renewal, a load or an eviction copies one shard
// of a few dozen names, whatever the number of names. With
// [Manager.CacheCapacity], certificates that have not served a handshake
// for the longest while leave memory (a CLOCK policy: every handshake
// marks its certificate, a sweep evicts the unmarked); they stay in
// storage and in the renewal schedule, and are loaded again — one
// storage read and one parse — on their next handshake or when their
// renewal comes due (a certificate whose Store is pending is never
// evicted); what a name costs while its certificate is not in
// memory is its plan in the schedule (about 34 bytes plus the name). Start-up
// is O(1): the first handshake is served at once, while the schedule of
// every stored certificate is built in the background, once the first
// handshakes' storage loads pause for 250 ms (at most 5 s after the
// Manager's first use), from a schedule index the Manager keeps in its
// storage (index/, 1,024 small values per issuer, whatever the number of
// names), without loading the certificates;
// certificates the index does not know (stored by an older version) are
// loaded at a paced rate and added to it (a failed listing of them is
// tried again after FailureBackoff). An evicted certificate keeps its
// ARI polls (each loads it again); one planned from the index after a
// restart is looked at once at a random point of the first six hours (the
// index holds no poll times), when it is loaded and the ARI poll its stored
// renewal information asks for follows, so that a revocation reaches
// certificates not served since the restart. [Manager.Manage] streams its names through the background
// queue, a few per worker at a time, so a call with a million names holds
// nothing per waiting name. docs/postgres.md sizes a fleet's PostgreSQL.
//
// # Views
//
// A view of many names — a status page, a metrics scrape, a command's
// list — reads a [Snapshot] ([Manager.Snapshot]): one compact row per
// managed name (expiry, planned renewal, last failure, whether stored, in
// memory, managed), ordered by expiry then name, built from the schedule
// index and what the Manager holds in memory without loading a
// certificate the index knows (the index records each name's expiry,
// renewal, validity start and last failed renewal). Every view of the
// Manager shares the last snapshot: it is rebuilt, in the background, when
// older than [SnapshotMaxAge] or twenty times its build time, so building
// snapshots takes at most a twentieth of the time whatever the number of
// names (a call that finds it older than a minute waits for the next);
// [Manager.RefreshSnapshot] builds one at once. A view then loads
// the full state of only the rows it shows ([Manager.CertificatesOf]),
// and pages through the snapshot with its cursors ([Snapshot.Cursor],
// [Snapshot.Seek]), which stay valid from one snapshot to the next.
// BENCHMARKS.md has the cost at a million names.
//
// # Failures
//
// A failed attempt is remembered per name with a growing backoff: it starts
// at FailureBackoff and doubles with each further failure up to four
// hours, with ±10 % jitter, and a longer Retry-After from the CA is
// obeyed. Failures are remembered in memory, for any number of names:
// while the back-off runs, as long again after it (a failure in that time
// doubles the wait, a later one starts again from FailureBackoff), and for
// as long as a retry is planned; records past that are pruned. The old
// certificate keeps being served; a managed name without a valid certificate is retried in
// the background, handshake or not. A CA's Retry-After is obeyed and
// written to storage, so a restarted Manager and the other nodes wait too.
// An account the CA no longer knows or no longer accepts (the CA was
// reset, the account deactivated) is replaced by exactly one new one.
// After a failed validation the next attempt prefers another enabled
// challenge type. A certificate that could not be stored is served from
// memory and stored later, without a second order; so is a newly
// registered account, which is not registered again. Orders and their Store
// run under the storage lock's context, so a node that lost its lock
// (stalled, partitioned) cannot overwrite what the node that took over
// stored. A certificate that expired while renewals failed (the CA is
// down, renewal keeps failing) is served, as a last resort, only with
// [Manager.ServeExpired]; without it the handshake fails with an error
// naming the expiry and the last failure. The expired value stays in
// storage until its replacement is stored, and renewal is retried either
// way.
//
// Other nodes' certificates are picked up at once when the storage reports
// changes ([storage.Watcher]), else at the next scheduled check. The watch
// waits for the same pause of the first handshakes' loads as the
// discovery (a file watch first stats every stored file); then each
// certificate in memory whose stored value changed since shortly before
// the start (ten minutes, for a storage server's clock) is read again, so
// a renewal stored meanwhile is not missed.
// [Manager.Close] stops this work, waits for it and releases every lock.
//
// # Issuers
//
// [Manager.Issuers] lists ACME CAs in order of preference, each with its own
// account ([LetsEncrypt], [LetsEncryptStaging], [ZeroSSL],
// [GoogleTrustServices], or an [Issuer] with any directory). An empty list
// means LetsEncrypt(""): Let's Encrypt's production CA, with an account
// that has no contact address. When one fails — an outage, a rate limit,
// a refusal, an EAB error — the next is tried (EventIssuerFailed), and an
// error joins an [*IssuerError] per issuer tried. Stored certificates
// remember their issuer; every issuance and renewal starts with the first
// again.
//
// AcceptTOS, HTTPClient and RootCAs are the Manager's, not an Issuer's:
// they apply to every issuer alike (one operator agrees to the terms; one
// network path reaches the CAs). AcceptTOS agrees to each CA's terms of
// service on the operator's behalf; when an account is registered, the
// terms' URL is logged at Info, and without AcceptTOS registration fails,
// before any account is created, with an error that names the terms' URL
// and matches [acme.ErrTermsNotAgreed] (unless the CA has no terms). A nil
// HTTPClient means [acme.NewHTTPClient](RootCAs): the acme package's
// documented timeouts, the proxy from the environment, and the system's
// roots unless RootCAs is set (for a private CA such as step-ca; RootCAs is
// ignored when HTTPClient is set). To change the client (a proxy, a
// dialer) without losing those defaults, start from acme.NewHTTPClient.
// Redirects are never followed, whatever the client's CheckRedirect says.
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
// scheduled, replaced, failed, issuer failed, rate limited, not stored,
// stored, expiring, expired, refused, not renewed, and a dns-persist-01
// record missing, found or ending) and
// [Manager.Logger] structured logs; neither ever carries key material or
// account secrets. OnEvent runs on the Manager's background goroutines and
// also inline on handshake goroutines (GetCertificate emits EventLoaded
// when it loads a certificate from storage), so it must be safe for
// concurrent use and must not block: a slow OnEvent delays TLS handshakes.
// [Manager.ACMEObserver] is told of every exchange the Manager's ACME
// clients have with the CAs (an [acme.Exchange]: operation, status,
// problem, latency; never bodies or secrets), under the same rules.
// [Manager.AuditLog] receives both, for an audit trail: package audit
// provides one kept in storage, with queries and the rate-limit picture.
//
// # Importing
//
// ImportCertificate stores a certificate obtained elsewhere (another ACME
// client, the tlsmint command, package migrate) in the Manager's format,
// under the name's storage lock, so that a Manager for its CA serves it with
// no order and renews it when due; StoredIssuers lists the CAs a storage
// holds certificates of.
//
// # Storage format
//
// Each certificate is one storage value, written atomically, under
// "certificates/<issuer>/<name>.json" (the suffix is historical): the chain,
// its private key and its metadata (issuer, order and account URLs, when it
// was obtained, the CA's renewal information, the last failed renewal).
// Format 2, written since this version, is a header line ("tlsmint
// certificate v2"), the metadata as JSON, the chain and the key (PKCS #8)
// as length-prefixed DER, and a CRC-32C; reading it costs one storage read
// and one parse of the leaf and key, less than reading a PEM chain and key
// into a [crypto/tls.Certificate]. Format 1 (one JSON object with the
// chain and key in PEM), written by earlier versions, is read as well, and
// rewritten in format 2 the next time the Manager stores the value (its
// first ARI poll, a recorded failure, its renewal). Versions before format
// 2 take a format 2 value for a corrupt one: during a rolling upgrade of a
// fleet, an older node that needs such a certificate orders a new one and
// stores it in format 1, which the upgraded nodes read. A value that
// cannot be read is logged (never with key material) and treated as
// absent. In memory, the certificates of one CA share their intermediate
// certificates and account URL.
//
// # Testing
//
// The package's tests run real TLS handshakes against Let's Encrypt's Pebble
// in-process (internal/testpebble) with real http-01, tls-alpn-01 and dns-01
// validation; examples/local shows the same set-up as a program.
package autotls
