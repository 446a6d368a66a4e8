package watchdog

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/revocation"
)

// Defaults for the zero values of [Watchdog]'s fields.
const (
	// DefaultInterval is the time between two rounds of the loop.
	DefaultInterval = time.Hour
	// DefaultConcurrency is the number of handshakes in flight at once.
	DefaultConcurrency = 4
	// DefaultTimeout bounds one dial and handshake.
	DefaultTimeout = 10 * time.Second
)

// A Watchdog probes what TLS endpoints actually serve — an
// [autotls.Manager]'s own
// listeners and remote endpoints — and reports what is wrong with it:
// expiry, names, trust, and whether it is the certificate the Manager
// holds.
//
// Its fields are configuration: set them before the first call to Probe,
// Check or Start and do not change them afterwards. The zero value probes
// nothing; set Listeners (with a Manager) or Targets. A Watchdog is safe
// for concurrent use.
type Watchdog struct {
	// Manager is the Manager whose certificates the listeners must serve,
	// usually an [*autotls.Manager]. Nil means none: managed targets
	// (those of Listeners included) report ErrInvalidTarget, and without
	// Names the Listeners have no name to be probed with.
	Manager Source
	// Listeners are the addresses ("host:port") of the Manager's own
	// listeners. Each is probed with every name in Names, as a managed
	// target. Nil means none.
	Listeners []string
	// Names are the server names to probe on each listener. Nil means
	// every name the Manager holds a certificate for, read from
	// Manager.Certificates at each round (wildcard names are skipped:
	// list a name under them here to probe one).
	Names []string
	// Targets are further endpoints to probe, remote ones (Managed false)
	// or ones that front the Manager (Managed true). Nil means none.
	Targets []Target

	// Roots verifies the served chains. Nil means the system roots.
	Roots *x509.CertPool
	// ExpiryThreshold is how close to its expiry a valid certificate is
	// reported with ErrExpiringSoon; the shorter of it and ExpiryFraction
	// of the certificate's lifetime applies. Zero means
	// DefaultExpiryThreshold (7 days); negative turns the check off
	// (expired certificates are still reported).
	ExpiryThreshold time.Duration
	// ExpiryFraction is the share of a certificate's lifetime (NotBefore
	// to NotAfter) left below which it is expiring soon. Zero means
	// DefaultExpiryFraction (a quarter); negative means the absolute
	// ExpiryThreshold alone.
	ExpiryFraction float64

	// Interval is the time from the end of one round of the loop started
	// by Start to the beginning of the next. Zero or negative means
	// DefaultInterval (an hour).
	Interval time.Duration
	// Concurrency is the number of dials and handshakes in flight at once,
	// across every Probe, Check and the loop. Zero or negative means
	// DefaultConcurrency (4).
	Concurrency int
	// Timeout bounds each target's dial and handshake together. Zero or
	// negative means DefaultTimeout (10 s).
	Timeout time.Duration
	// DialContext opens the TCP connection a handshake runs on. Nil means
	// a [net.Dialer]. Nothing but the TLS handshake is ever sent on it.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	// OnResult is called with every result of a round, and OnProblem with
	// every result that has problems (after OnResult), in target order,
	// one at a time, from the goroutine that called Probe (the loop's own
	// for rounds it runs), once every target of the round is probed. Nil
	// means none.
	OnResult, OnProblem func(Result)
	// AuditLog, if set, receives an audit record (Kind record.KindProbe)
	// for every result of a round that has problems, and one with
	// Outcome record.OutcomeOK for a target that had problems in the
	// previous round and has none now. An [*audit.Log] is one; give the
	// Manager's, and the trail says what clients were served next to
	// what the Manager did. Nil means none.
	AuditLog Recorder
	// Logger receives a warning for each result with problems and the
	// errors of the loop's rounds. Nil means silent.
	Logger *slog.Logger
	// Now is the clock the expiry checks use. Nil means time.Now.
	Now func() time.Time
	// Revocation looks each served leaf that has not expired up in the
	// certificate revocation lists it names (CRLDistributionPoints, as
	// Let's Encrypt's certificates do), verified with the served issuer;
	// a leaf they list is reported with ErrRevoked. Each list is fetched
	// at most once an hour (revocation.DefaultCacheFor) however many
	// targets name it. Nil means a Checker of the Watchdog's own with the
	// defaults; a leaf that names no list costs nothing.
	Revocation *revocation.Checker

	initOnce sync.Once
	sem      chan struct{}
	crl      *revocation.Checker // Revocation, or the Watchdog's own

	mu      sync.Mutex
	last    []Result
	closed  bool
	started bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// A Recorder keeps audit records; [*audit.Log] is one. Add must be safe
// for concurrent use and should not block.
type Recorder interface {
	Add(record.Audit)
}

func (w *Watchdog) init() {
	w.initOnce.Do(func() {
		n := w.Concurrency
		if n <= 0 {
			n = DefaultConcurrency
		}
		w.sem = make(chan struct{}, n)
		w.crl = w.Revocation
		if w.crl == nil {
			w.crl = &revocation.Checker{}
		}
	})
}

func (w *Watchdog) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

func (w *Watchdog) logger() *slog.Logger {
	if w.Logger != nil {
		return w.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (w *Watchdog) isClosed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}

// Last returns the results of the last round that completed (by Probe or
// the loop), in target order; nil before the first. The slice is a copy;
// the results in it share their chains and must not be modified. It is
// what a status page or a metrics collector reads.
func (w *Watchdog) Last() []Result {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == nil {
		return nil
	}
	return append([]Result(nil), w.last...)
}

// Start starts the loop: a round (see [Watchdog.Probe]) at once, then one
// Interval after each round ends, until Close. It returns ErrStarted when
// the loop runs already and ErrClosed after Close.
func (w *Watchdog) Start() error {
	w.init()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	if w.started {
		return ErrStarted
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.started, w.cancel, w.done = true, cancel, make(chan struct{})
	go w.loop(ctx, w.done)
	return nil
}

// Close stops the loop, cancelling a round in flight, and waits for it to
// end. Probe, Check and Start return ErrClosed afterwards; Last still
// returns the last results. Close may be called more than once.
func (w *Watchdog) Close() error {
	w.mu.Lock()
	w.closed = true
	cancel, done := w.cancel, w.done
	w.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return nil
}

func (w *Watchdog) loop(ctx context.Context, done chan struct{}) {
	defer close(done)
	interval := w.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.round(ctx)
		t.Reset(interval)
	}
}

// round runs one Probe for the loop; a panic (in a callback, say) is
// logged with its stack and the loop goes on.
func (w *Watchdog) round(ctx context.Context) {
	defer func() {
		if r := recover(); r != nil {
			w.logger().Error("watchdog: round panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	if _, err := w.Probe(ctx); err != nil && ctx.Err() == nil {
		w.logger().Warn("watchdog: round", "err", err)
	}
}
