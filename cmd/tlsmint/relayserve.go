package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tlsmint/tlsmint/audit"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/metrics"
	"github.com/tlsmint/tlsmint/relay"
	"github.com/tlsmint/tlsmint/solvers"
	"github.com/tlsmint/tlsmint/storage"
)

// Running the relay: serveRelay and its steps, in the order it takes
// them.

// relayRuntime is a running relay: its servers and what Close stops.
type relayRuntime struct {
	srv       *relay.Server
	manager   *autotls.Manager
	collector *metrics.Collector
	trail     *audit.Log
	fileLeaf  *x509.Certificate // the certificate of tls.cert_file, if given
	servers   []*http.Server
	closers   []func()
}

// relayListeners are the relay's addresses, every one taken before any
// is served.
type relayListeners struct {
	acme, admin net.Listener
	http01      net.Listener // nil without http01_listen
}

// serveRelay runs the relay until ctx is done: it reads the admin token,
// opens the storage and the audit trail, sets up the relay's own
// certificate and metrics, the upstreams and the relay server, takes
// every address, applies the tenants file, then serves until ctx is done
// or a server fails, and shuts down.
func (a *app) serveRelay(ctx context.Context, cfg *relayConfig) (err error) {
	logger := a.relayLogger()
	token, err := a.relayAdminToken(cfg, logger)
	if err != nil {
		return err
	}
	store, closeStore, err := openRelayStorage(ctx, cfg.Storage)
	if err != nil {
		return err
	}
	rt := &relayRuntime{closers: []func(){closeStore}}
	defer func() {
		if err != nil {
			rt.close()
		}
	}()
	rt.openTrail(cfg, store, logger)
	tlsConf, adminTLS, err := a.relayTLSConfigs(cfg, store, rt, logger)
	if err != nil {
		return err
	}
	rt.startMetrics(store)
	ups, http01, err := a.relayUpstreams(ctx, cfg, store, rt, logger)
	if err != nil {
		return err
	}
	if err := rt.newServer(cfg, store, ups, token, logger); err != nil {
		return err
	}
	lns, err := rt.listen(cfg, http01 != nil)
	if err != nil {
		return err
	}
	// The tenants file once every address is taken: a relay that cannot
	// start changes nothing in the storage.
	if cfg.TenantsFile != "" {
		if err := a.applyTenants(ctx, rt.srv, cfg.TenantsFile, logger); err != nil {
			return err
		}
	}
	if !cfg.Admin.TLS {
		adminTLS = nil
	}
	errc := rt.serve(cfg, lns, tlsConf, adminTLS, http01, token, logger)
	a.announceRelay(cfg, rt, lns)
	a.manageRelayNames(ctx, cfg, rt, logger)

	select {
	case <-ctx.Done():
	case err := <-errc:
		rt.shutdown(time.Duration(cfg.ShutdownTimeout), logger)
		return fmt.Errorf("serving: %w", err)
	}
	fmt.Fprintln(a.stderr, "tlsmint relay: stopping")
	rt.shutdown(time.Duration(cfg.ShutdownTimeout), logger)
	fmt.Fprintln(a.stderr, "tlsmint relay: stopped")
	return nil
}

// relayLogger is the relay's logger, on stderr: debug with -v.
func (a *app) relayLogger() *slog.Logger {
	level := slog.LevelInfo
	if a.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
}

// relayAdminToken reads the admin token, refuses a short one and warns
// of a token file other users can read.
func (a *app) relayAdminToken(cfg *relayConfig, logger *slog.Logger) (string, error) {
	token, err := a.secret(cfg.Admin.TokenFile, cfg.Admin.TokenEnv, "admin token")
	if err != nil {
		return "", err
	}
	if len(token) < minAdminToken {
		return "", usagef("the admin token is %d characters long: use at least %d random ones (for example: openssl rand -base64 32)", len(token), minAdminToken)
	}
	if cfg.Admin.TokenFile != "" {
		if fi, err := os.Stat(cfg.Admin.TokenFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
			logger.Warn("tlsmint relay: the admin token file is readable by other users", "file", cfg.Admin.TokenFile, "mode", fi.Mode().Perm().String())
		}
	}
	return token, nil
}

// openTrail starts the relay's audit trail in store, under the node's
// name (node, else the host's).
func (rt *relayRuntime) openTrail(cfg *relayConfig, store storage.Storage, logger *slog.Logger) {
	node := cfg.Node
	if node == "" {
		node, _ = os.Hostname()
	}
	rt.trail = &audit.Log{Storage: store, Node: node, Retention: time.Duration(cfg.AuditRetention), Logger: logger}
	rt.closers = append(rt.closers, func() { rt.trail.Close() })
}

// relayTLSConfigs returns the TLS configurations of the ACME listener
// (with client_auth's roots, when given) and of the admin listener, which
// asks for no client certificate, from the relay's own certificate.
func (a *app) relayTLSConfigs(cfg *relayConfig, store storage.Storage, rt *relayRuntime, logger *slog.Logger) (acmeTLS, adminTLS *tls.Config, err error) {
	acmeTLS, err = a.relayTLS(cfg, store, rt, logger)
	if err != nil {
		return nil, nil, err
	}
	adminTLS = acmeTLS.Clone()
	if ca := cfg.ClientAuth; ca != nil {
		pool, err := rootsOf(ca.CARoots, "client_auth.ca_roots")
		if err != nil {
			return nil, nil, err
		}
		acmeTLS.ClientCAs, acmeTLS.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return acmeTLS, adminTLS, nil
}

// startMetrics starts the collector of the relay's metrics, which the
// Manager of its own certificate, if any, reports to; the pool of store
// is exported too.
func (rt *relayRuntime) startMetrics(store storage.Storage) {
	mopts := metrics.Options{Storage: store}
	if rt.fileLeaf != nil {
		mopts.Certificates = fileCertSource{rt.fileLeaf}.Certificates // the Manager holds none
	}
	rt.collector = metrics.New(rt.manager, mopts)
	rt.closers = append(rt.closers, func() { rt.collector.Close() })
	if rt.manager != nil {
		rt.manager.ACMEObserver = rt.collector
		rt.manager.OnEvent = rt.collector.OnEvent
	}
}

// relayUpstreams sets up the upstream CAs, and the http-01 solver they
// share when http01_listen is set (nil otherwise).
func (a *app) relayUpstreams(ctx context.Context, cfg *relayConfig, store storage.Storage, rt *relayRuntime, logger *slog.Logger) ([]*relay.Upstream, *solvers.HTTP01, error) {
	var http01 *solvers.HTTP01
	if cfg.HTTP01Listen != "" {
		http01 = &solvers.HTTP01{Store: solvers.StorageTokens{Storage: store, Prefix: http01TokenStore}, Logger: logger}
	}
	var ups []*relay.Upstream
	for i := range cfg.Upstreams {
		u := &cfg.Upstreams[i]
		field := fmt.Sprintf("upstreams[%d]", i)
		up, err := a.relayUpstream(ctx, store, u, field, http01, rt, logger)
		if err != nil {
			return nil, nil, err
		}
		ups = append(ups, up)
	}
	return ups, http01, nil
}

// relayValidator is the validator of the configuration, with its resolver
// (over TCP) when one is given.
func relayValidator(cfg *relayConfig) *relay.Validator {
	v := &relay.Validator{HTTPPort: cfg.Validator.HTTPPort, TLSPort: cfg.Validator.TLSPort, Timeout: time.Duration(cfg.Validator.Timeout)}
	if cfg.Validator.Resolver != "" {
		addr := cfg.Validator.Resolver
		v.Resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}}
	}
	return v
}

// newServer makes and validates the relay server of the configuration.
func (rt *relayRuntime) newServer(cfg *relayConfig, store storage.Storage, ups []*relay.Upstream, token string, logger *slog.Logger) error {
	rt.srv = &relay.Server{
		Storage:           store,
		BaseURL:           relayBaseURL(cfg),
		Upstreams:         ups,
		Anonymous:         cfg.Anonymous,
		TermsOfService:    cfg.TermsOfService,
		Website:           cfg.Website,
		Profiles:          cfg.Profiles,
		Validator:         relayValidator(cfg),
		AuditLog:          rt.trail,
		OnDecision:        rt.collector.ObserveDecision,
		AllowedSources:    cfg.AllowedSources,
		AdminToken:        token,
		AdminSources:      cfg.Admin.Sources,
		FinalizeWait:      time.Duration(cfg.FinalizeWait),
		UpstreamTimeout:   time.Duration(cfg.UpstreamTimeout),
		Routes:            cfg.Routes,
		RequireClientCert: cfg.ClientAuth != nil && cfg.ClientAuth.Require,
		SharedNonces:      cfg.SharedNonces,
		NonceLifetime:     time.Duration(cfg.NonceLifetime),
		Retention: relay.Retention{
			Orders: time.Duration(cfg.Retention.Orders), Certificates: time.Duration(cfg.Retention.Certificates),
			SweepInterval: time.Duration(cfg.Retention.SweepInterval),
		},
		Logger: logger,
	}
	if err := rt.srv.Validate(); err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("relay configuration: %w", err)}
	}
	// The closers run last first: the listeners, the relay (its
	// issuances), the collector, the Manager, the trail, the storage.
	rt.closers = append(rt.closers, func() { rt.srv.Close() })
	return nil
}

// listen takes every address of the configuration (the upstream http-01
// one when http01) before anything is served.
func (rt *relayRuntime) listen(cfg *relayConfig, http01 bool) (*relayListeners, error) {
	lns := &relayListeners{}
	var err error
	if lns.acme, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, relayListenError("the ACME API", cfg.Listen, err)
	}
	rt.closers = append(rt.closers, func() { lns.acme.Close() })
	if lns.admin, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
		return nil, relayListenError("the admin API", cfg.Admin.Listen, err)
	}
	rt.closers = append(rt.closers, func() { lns.admin.Close() })
	if http01 {
		if lns.http01, err = net.Listen("tcp", cfg.HTTP01Listen); err != nil {
			return nil, relayListenError("upstream http-01", cfg.HTTP01Listen, err)
		}
		rt.closers = append(rt.closers, func() { lns.http01.Close() })
	}
	return lns, nil
}

// serve serves the ACME API, the admin API (over TLS when adminTLS is
// set) and the upstream http-01 solver on their listeners, each in its
// own goroutine; the channel returned gets the errors that end them.
func (rt *relayRuntime) serve(cfg *relayConfig, lns *relayListeners, acmeTLS, adminTLS *tls.Config, http01 *solvers.HTTP01, token string, logger *slog.Logger) <-chan error {
	errc := make(chan error, 3)
	serve := func(ln net.Listener, h http.Handler, conf *tls.Config) {
		hs := &http.Server{
			Handler: h, ReadHeaderTimeout: min(10*time.Second, time.Duration(cfg.ReadTimeout)), ReadTimeout: time.Duration(cfg.ReadTimeout),
			IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		}
		rt.servers = append(rt.servers, hs)
		if conf != nil {
			ln = tls.NewListener(ln, conf)
		}
		go func() {
			if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	serve(lns.acme, rt.srv, acmeTLS)
	serve(lns.admin, rt.adminHandler(token, cfg.Admin.Sources), adminTLS)
	if lns.http01 != nil {
		serve(lns.http01, http01, nil)
	}
	return errc
}

// announceRelay prints where the relay serves what.
func (a *app) announceRelay(cfg *relayConfig, rt *relayRuntime, lns *relayListeners) {
	dir := rt.srv.BaseURL + "/directory"
	if rt.srv.BaseURL == "" {
		// The URLs follow the request's Host; the certificate says which
		// names the clients can use.
		dir = certDirectoryURL(rt.fileLeaf, lns.acme.Addr()) + " (the URLs follow the request's Host)"
	}
	adminScheme := "http"
	if cfg.Admin.TLS {
		adminScheme = "https"
	}
	if rt.fileLeaf != nil {
		fmt.Fprintf(a.stderr, "tlsmint relay: certificate %s for %s, expires %s\n", cfg.TLS.CertFile, strings.Join(certNames(rt.fileLeaf), ", "), rt.fileLeaf.NotAfter.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(a.stderr, "tlsmint relay: ACME directory %s, listening on %s\n", dir, lns.acme.Addr())
	fmt.Fprintf(a.stderr, "tlsmint relay: admin API, /status and /metrics on %s://%s\n", adminScheme, lns.admin.Addr())
	if lns.http01 != nil {
		fmt.Fprintf(a.stderr, "tlsmint relay: upstream http-01 on %s\n", lns.http01.Addr())
	}
}

// manageRelayNames obtains the relay's own certificate for tls.names in
// the background, when autotls manages it.
func (a *app) manageRelayNames(ctx context.Context, cfg *relayConfig, rt *relayRuntime, logger *slog.Logger) {
	if rt.manager == nil || len(cfg.TLS.Names) == 0 {
		return
	}
	go func() {
		if err := rt.manager.Manage(ctx, cfg.TLS.Names...); err != nil {
			logger.Error("tlsmint relay: obtaining the relay's certificate failed (retried in the background)", "names", cfg.TLS.Names, "err", err)
			return
		}
		fmt.Fprintf(a.stderr, "tlsmint relay: certificate for %s ready\n", strings.Join(cfg.TLS.Names, ", "))
	}()
}

// shutdown stops accepting, lets requests under way finish within
// timeout, then stops the relay and writes the audit trail.
func (rt *relayRuntime) shutdown(timeout time.Duration, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, hs := range rt.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := hs.Shutdown(ctx); err != nil {
				logger.Warn("tlsmint relay: requests still running at shutdown were cut", "err", err)
				hs.Close()
			}
		}()
	}
	wg.Wait()
	rt.close()
}

// close runs the closers, last first.
func (rt *relayRuntime) close() {
	for i := len(rt.closers) - 1; i >= 0; i-- {
		rt.closers[i]()
	}
	rt.closers = nil
}

// relayListenError explains a listen failure of the relay.
func relayListenError(what, addr string, err error) error {
	return explainListen(what, addr, err, "another server listens there")
}
