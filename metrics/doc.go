// Package metrics exports an [autotls.Manager]'s certificates and ACME
// traffic to Prometheus: a [Collector] that answers scrapes from a compact
// copy of the Manager's snapshot ([autotls.Manager.Snapshot], the one its
// status page reads too), kept current by the Manager's events, and
// counts every exchange with the CA through [acme.Observer].
// It is the only package of tlsmint that depends on
// github.com/prometheus/client_golang.
//
// # Getting started
//
// Create the collector, wire it to the Manager before the Manager's first
// use, register it and serve it:
//
//	m := &autotls.Manager{Hosts: autotls.HostWhitelist("example.com"), AcceptTOS: true}
//	c := metrics.New(m, metrics.Options{})
//	defer c.Close()
//	m.ACMEObserver = c
//	m.OnEvent = c.OnEvent // or a func that calls c.OnEvent and your own handler
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(c)
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// Or serve [Collector.Handler], which registers the collector with the Go
// runtime's and the process's series and tlsmint_build_info{version,
// goversion} ([NewBuildInfoCollector]; register it once yourself in your
// own registry) in a registry of its own, so that a program need not
// import client_golang itself.
//
// Two Managers (or a Manager and a relay) in one process register their
// collectors in one registry when [Options.ConstLabels] sets them apart:
//
//	reg.MustRegister(
//		metrics.New(public, metrics.Options{ConstLabels: prometheus.Labels{"manager": "public"}}),
//		metrics.New(internal, metrics.Options{ConstLabels: prometheus.Labels{"manager": "internal"}}),
//	)
//
// Manager.OnEvent holds one function: to handle events yourself too, call
// [Collector.OnEvent] from yours. Manager.ACMEObserver holds one observer:
// to feed an audit trail as well, give it an observer that calls both.
//
// # Series
//
// Per name, for at most Options.MaxNames names (those whose certificates
// expire soonest, names without a certificate first):
//
//	tlsmint_certificate_not_after_timestamp_seconds{name,issuer}
//	tlsmint_certificate_renewal_timestamp_seconds{name,issuer,reason}   reason: schedule, ari, ari-window-passed
//	tlsmint_certificate_ready{name,issuer}                              1: valid and the last attempt did not fail
//	tlsmint_rate_limited_until_timestamp_seconds{name,issuer}           while the CA's Retry-After runs
//
// Over every name, whatever the cap:
//
//	tlsmint_certificates{state}              state: valid, expired, missing (no certificate yet)
//	tlsmint_certificates_expiring{within}    within: 1d, 7d, 30d (valid certificates; cumulative)
//	tlsmint_certificates_failing             names whose last attempt failed
//	tlsmint_certificates_not_stored          served from memory, Store being retried
//	tlsmint_metrics_names_omitted            names left out of the per-name series
//
// From the CA exchanges and the events:
//
//	tlsmint_acme_requests_total{issuer,operation,status,problem}
//	tlsmint_acme_request_duration_seconds{issuer,operation}             histogram
//	tlsmint_issuance_total{issuer,result}                               result: success, failure, fallback, not_renewed
//	tlsmint_issuance_duration_seconds{issuer,result}                    histogram, first newOrder to outcome
//	tlsmint_rate_limited_total{issuer}
//	tlsmint_on_demand_refused_total{reason}                             reason: no_server_name, invalid_name, not_allowed, on_demand_limited
//	tlsmint_metrics_refresh_timestamp_seconds, tlsmint_metrics_refresh_errors_total
//
// From decision records given to [Collector.ObserveDecision] (set
// relay.Server.OnDecision to it):
//
//	tlsmint_decisions_total{operation,outcome,problem}                  outcome: ok, failure, refused; at most 128 operations, then other
//	tlsmint_relay_certificates_issued_total{tenant}                     relay.issue decisions that succeeded; at most 1000 tenants, then other
//	tlsmint_relay_unauthenticated_refusals_total{problem,network}       relay refusals without a valid account; network: IPv4 /24, IPv6 /48; at most 1000, then other
//
// From a [watchdog.Watchdog] whose OnResult is [Collector.ObserveProbe]
// (what clients are actually served):
//
//	tlsmint_watchdog_probes_total{result}                               result: ok, problem
//	tlsmint_watchdog_problems_total{problem}                            problem: watchdog.ProblemName (revoked, expired, expiring_soon, untrusted, …)
//	tlsmint_watchdog_targets_failing                                    targets whose last probe found a problem
//	tlsmint_watchdog_target_problem{target,server_name,problem}         1 per problem of a failing target (at most MaxNames targets)
//	tlsmint_watchdog_last_probe_timestamp_seconds
//
// From the storage's connection pool, read at each scrape, when the
// storage (Options.Storage, else the Manager's) implements
// [storage.PoolReporter], as storage/postgres does:
//
//	tlsmint_storage_pool_connections{state}                             state: idle, in_use, opening
//	tlsmint_storage_pool_max_connections
//	tlsmint_storage_pool_acquires_total, tlsmint_storage_pool_empty_acquires_total, tlsmint_storage_pool_canceled_acquires_total
//	tlsmint_storage_pool_acquire_seconds_total
//	tlsmint_storage_pool_connections_opened_total
//	tlsmint_storage_pool_connections_closed_total{reason}               reason: idle, lifetime
//	tlsmint_storage_pool_broken_connections_total
//
// The issuer label is the CA's directory URL; status is the final HTTP
// status ("none" when no response came); problem is the ACME error name
// ("rateLimited", "badNonce", …), "other" for a type outside RFC 8555's
// list, empty for none, so a CA cannot grow the label set. A label value
// that is not valid UTF-8 (a directory URL, a name or a watchdog target
// as configured or stored), which Prometheus refuses, has each invalid
// byte written as \xNN; the exposition format escapes quotes,
// backslashes and newlines. An issuance is
// timed from the first newOrder for its name to the event that ends it,
// fallbacks to other issuers included; a certificate another node
// obtained (EventLoaded) is not timed. Refusals are read from
// [autotls.Manager.Refusals] at each scrape: every refused handshake
// counts, also those past the pace of EventRefused.
//
// # Cost
//
// A scrape never reads storage for every name. The collector keeps a
// record of a few words per name, filled from the Manager's snapshot
// (built from the schedule index and memory, without loading a
// certificate the index knows, and shared with the Manager's other views:
// a status page and a scrape cost one build) at the first scrape and then
// in the background when the copy is older than Options.RefreshInterval,
// while the scrape is answered from the copy; events (OnEvent) update it in between, and those that arrive
// during a read are applied to the new copy. A scrape is one pass over the
// records plus a bounded heap for the per-name cap: see BENCHMARKS.md for
// its cost at 10,000 and 1,000,000 names. The collector adds nothing to
// [autotls.Manager.GetCertificate]'s cache-hit path; OnEvent and
// ObserveExchange take short locks that a scrape never holds for long.
//
// # Concurrency
//
// A [Collector] is safe for concurrent use. It starts no goroutine until
// a scrape needs a background read; [Collector.Close] stops and waits for
// it.
//
// # Testing
//
// The package's tests obtain certificates from the in-process Pebble CA,
// scrape the collector through promhttp and parse the exposition format,
// lint the series with testutil.CollectAndLint, and check the cap and the
// aggregates against simulated certificate lists.
package metrics
