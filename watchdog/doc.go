// Package watchdog probes what TLS endpoints actually serve — not what a
// Manager believes it serves — and reports what is wrong: a certificate
// that expires soon or has expired, one its CA has revoked, one that does
// not cover the name, a chain that does not verify, or, on the Manager's
// own listeners, a certificate other than the one the Manager holds.
//
// # Getting started
//
// Give a [Watchdog] the Manager, the addresses of its listeners and any
// remote endpoints, then start it:
//
//	w := &watchdog.Watchdog{
//		Manager:   m, // an *autotls.Manager
//		Listeners: []string{"127.0.0.1:443"},
//		Targets:   []watchdog.Target{{Addr: "api.example.net:443"}},
//		OnProblem: func(r watchdog.Result) { alert(r.Target, r.Err()) },
//	}
//	if err := w.Start(); err != nil {
//		log.Fatal(err)
//	}
//	defer w.Close()
//
// Each listener is probed with every name the Manager holds a certificate
// for ([autotls.Manager.Certificates]), or with [Watchdog.Names]. A round
// runs at once and then every [Watchdog.Interval]; [Watchdog.Probe] runs
// one now, and [Watchdog.Check] probes a single [Target]. [Watchdog.Last]
// returns the last round's results for a status page or metrics.
//
// # Checks
//
// A probe opens a TCP connection, runs a TLS handshake with the target's
// server name as SNI, and closes the connection: no application data is
// sent and nothing but the handshake is followed. The served chain is then
// checked:
//
//   - expiry: [ErrExpired], [ErrNotYetValid], or [ErrExpiringSoon] when
//     less than the shorter of [Watchdog.ExpiryThreshold] (7 days) and
//     [Watchdog.ExpiryFraction] (a quarter) of the lifetime is left;
//   - revocation: [ErrRevoked] when a certificate revocation list the
//     leaf names (CRLDistributionPoints), signed by the served issuer,
//     lists it (package revocation; [Watchdog.Revocation] fetches each
//     list at most once an hour). A list that cannot be read is no
//     problem: [Result.RevocationErr] says why;
//   - names: [ErrNameMismatch] when the leaf does not cover the server
//     name (or the IP address);
//   - trust: [ErrUntrusted] when the chain, as served, does not verify
//     against [Watchdog.Roots] (nil: the system roots) for server
//     authentication. It is verified at a time inside the leaf's validity,
//     so an expired leaf is reported as expired only;
//   - for managed targets: [ErrNotManagerCertificate] when the leaf's
//     serial or expiry differs from the certificate the Manager holds for
//     the name (the exact one, else the wildcard one label up), or it
//     holds none.
//
// A target that cannot be reached reports [ErrUnreachable]; one whose
// handshake fails (an alert, not TLS, a timeout) reports [ErrHandshake].
//
// # Reporting
//
// Every result goes to [Watchdog.OnResult], those with problems also to
// [Watchdog.OnProblem] and to the Logger (a warning). Wire them to the
// rest of tlsmint's observability:
//
//	trail := &audit.Log{Storage: store}    // the Manager's AuditLog too
//	c := metrics.New(m, metrics.Options{}) // the Manager's collector
//	w := &watchdog.Watchdog{Manager: m, Listeners: addrs, AuditLog: trail, OnResult: c.ObserveProbe}
//
// With an AuditLog each result with problems becomes an audit record
// (record.KindProbe, the problems by [ProblemName], target, serial and
// expiry served), and a target that recovers writes one record with
// outcome ok; metrics.Collector.ObserveProbe counts results and
// problems and exposes the failing targets.
//
// # Errors
//
// The problems of a [Result] are errors, each wrapping one of the
// package's Err values and, where there is one, the underlying error, so
// both errors.Is(p, watchdog.ErrUntrusted) and errors.As(p,
// &x509.UnknownAuthorityError{}) work. [Result.Err] joins them.
//
// # Concurrency
//
// A Watchdog is safe for concurrent use. At most [Watchdog.Concurrency]
// handshakes (4) are in flight at once, across Probe, Check and the loop,
// each bounded by [Watchdog.Timeout] (10 s). The loop started by
// [Watchdog.Start] runs in one goroutine; [Watchdog.Close] stops it and
// waits for it. Callbacks run one at a time, after a round.
//
// # Testing
//
// Probe and Check run a round or one target on demand, and
// [Watchdog.Now] sets the clock the expiry checks use, so tests need
// neither the loop nor sleeps; [Watchdog.DialContext] lets a test serve
// handshakes over in-memory connections.
package watchdog
