package main

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/relay"
	"github.com/tlsmint/tlsmint/solvers"
	"github.com/tlsmint/tlsmint/statuspage"
	"github.com/tlsmint/tlsmint/storage"
	"github.com/tlsmint/tlsmint/storage/postgres"
)

// minAdminToken is the shortest admin token the relay accepts.
const minAdminToken = 16

// Storage keys the relay command adds to the relay's own.
const (
	keyUpstreamKeys  = "relay/upstream-keys/" // <sha256(upstream name)>: PEM account key (secret)
	http01TokenStore = "relay/http01-tokens"  // the upstream http-01 tokens, for every replica
)

func (a *app) relayCommand() *cobra.Command {
	var configFile string
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "Run the ACME relay, or manage its tenants and EAB keys",
		Long: `relay --config FILE runs the ACME relay (package relay): an ACME server for
the organisation's ACME clients that validates their challenges itself and
obtains their certificates from upstream CAs with its own accounts.

The configuration file is JSON (see docs/relay.md): the storage (a folder or
postgres://…), the listen address, the relay's own certificate (files, or
obtained with autotls for its names), the upstream CAs, the admin listener
(admin API, /status and /metrics) and its token (from a file or an
environment variable, never from the file or the command line).

The relay runs until SIGINT or SIGTERM, then stops accepting requests, lets
those under way finish (shutdown_timeout, 10s by default) and writes the
audit trail.

relay tenant and relay eab manage tenants and EAB keys, through a running
relay's admin API (--admin URL, with the token in TLSMINT_RELAY_ADMIN_TOKEN
or --admin-token-file) or directly in the storage that --config names.`,
		Example: `  tlsmint relay --config /etc/tlsmint/relay.json
  tlsmint relay tenant add web --config /etc/tlsmint/relay.json --name web.example.com
  tlsmint relay eab mint web --admin http://127.0.0.1:8081`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configFile == "" {
				return usagef("no configuration: pass --config FILE (or set TLSMINT_RELAY_CONFIG)")
			}
			cfg, err := loadRelayConfig(configFile)
			if err != nil {
				return err
			}
			return a.serveRelay(cmd.Context(), cfg)
		},
	}
	cmd.PersistentFlags().StringVar(&configFile, "config", "", "relay configuration file, JSON (env TLSMINT_RELAY_CONFIG)")
	cmd.AddCommand(a.relayTenantCommand(&configFile), a.relayEABCommand(&configFile))
	return cmd
}

// loadRelayConfig reads and checks a configuration file. Its errors are
// usage errors (exit 2) that name the file and the field.
func loadRelayConfig(path string) (*relayConfig, error) {
	b, err := readSmallFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, usagef("relay configuration %s does not exist", path)
		}
		return nil, fmt.Errorf("reading the relay configuration: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	cfg, err := parseRelayConfig(b, filepath.Dir(abs))
	if err != nil {
		return nil, &exitError{code: exitUsage, err: fmt.Errorf("relay configuration %s: %w", path, err)}
	}
	return cfg, nil
}

// openRelayStorage opens the configuration's storage: PostgreSQL, or a
// folder created (0700) when missing.
func openRelayStorage(ctx context.Context, s string) (storage.Storage, func(), error) {
	if isPostgres(s) {
		pg, err := postgres.New(ctx, postgres.Config{DSN: s})
		if err != nil {
			return nil, nil, fmt.Errorf("opening PostgreSQL storage: %w", err)
		}
		return pg, func() { pg.Close() }, nil
	}
	if fi, err := os.Stat(s); err == nil && !fi.IsDir() {
		return nil, nil, usagef("storage %s is not a folder", s)
	}
	d := storage.Dir(s)
	return d, func() { d.Close() }, nil
}

// secret reads a secret from a file (trimmed) or an environment variable.
func (a *app) secret(file, env, what string) (string, error) {
	var v string
	if file != "" {
		b, err := readSmallFile(file)
		if err != nil {
			return "", fmt.Errorf("reading the %s: %w", what, err)
		}
		v = strings.TrimSpace(string(b))
	} else {
		v = strings.TrimSpace(a.getenv(env))
		if v == "" {
			return "", usagef("the %s is not set: environment variable %s is empty", what, env)
		}
	}
	if v == "" {
		return "", usagef("the %s file %s is empty", what, file)
	}
	return v, nil
}

// eabOf reads an EAB's MAC key.
func (a *app) eabOf(e *relayEABConfig, field string) (*acme.ExternalAccountBinding, error) {
	if e == nil {
		return nil, nil
	}
	mac, err := a.secret(e.HMACFile, e.HMACEnv, field+" MAC key")
	if err != nil {
		return nil, err
	}
	key, err := acme.DecodeEABKey(mac)
	if err != nil {
		return nil, usagef("the %s MAC key is not base64url (as the CA hands it out)", field)
	}
	return &acme.ExternalAccountBinding{KeyID: e.KeyID, HMACKey: key}, nil
}

// rootsOf reads a PEM roots file; nil for the system's.
func rootsOf(file, field string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	b, err := readSmallFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", field, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, usagef("%s %s: no PEM certificate in it", field, file)
	}
	return pool, nil
}

// upstreamKey returns the relay's account key for an upstream: the file
// of account_key (created 0600 when missing), or a key kept in the
// storage (created once, under a lock, so every replica shares it).
func upstreamKey(ctx context.Context, store storage.Storage, u *relayUpstreamConfig) (crypto.Signer, bool, error) {
	if u.AccountKey != "" {
		k, err := loadKey(u.AccountKey)
		if err == nil {
			return k, false, nil
		}
		if !errors.Is(err, errNoKey) {
			return nil, false, err
		}
		k, err = newKey("p256")
		if err != nil {
			return nil, false, err
		}
		pemKey, err := encodeKey(k)
		if err != nil {
			return nil, false, err
		}
		p, err := stageFile(u.AccountKey, pemKey, 0o600)
		if err != nil {
			return nil, false, fmt.Errorf("writing the account key of upstream %s: %w", u.Name, err)
		}
		if err := p.commitNew(); err != nil {
			if errors.Is(err, fs.ErrExist) {
				k, err := loadKey(u.AccountKey)
				return k, false, err
			}
			return nil, false, fmt.Errorf("writing the account key of upstream %s: %w", u.Name, err)
		}
		return k, true, nil
	}
	sum := sha256.Sum256([]byte(u.Name))
	key := keyUpstreamKeys + hex.EncodeToString(sum[:16])
	load := func() (crypto.Signer, error) {
		b, err := store.Load(ctx, key)
		if err != nil {
			return nil, err
		}
		k, err := parseKey(b)
		if err != nil {
			return nil, fmt.Errorf("the stored account key of upstream %s (%s): %w", u.Name, key, err)
		}
		return k, nil
	}
	if k, err := load(); err == nil {
		return k, false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	unlock, err := store.Lock(ctx, key+".lock")
	if err != nil {
		return nil, false, err
	}
	defer unlock()
	if k, err := load(); err == nil {
		return k, false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	k, err := newKey("p256")
	if err != nil {
		return nil, false, err
	}
	pemKey, err := encodeKey(k)
	if err != nil {
		return nil, false, err
	}
	if err := store.Store(ctx, key, pemKey); err != nil {
		return nil, false, fmt.Errorf("storing the account key of upstream %s: %w", u.Name, err)
	}
	return k, true, nil
}

// fileCertSource shows the relay's own certificate of tls.cert_file on
// its status page, with its expiry.
type fileCertSource struct{ leaf *x509.Certificate }

// Certificates implements statuspage.CertificateSource.
func (f fileCertSource) Certificates(context.Context) ([]record.Certificate, error) {
	names := certNames(f.leaf)
	info := record.Certificate{
		Names: names, Issuer: "tls.cert_file (" + f.leaf.Issuer.CommonName + ")", Serial: hex.EncodeToString(f.leaf.SerialNumber.Bytes()),
		NotBefore: f.leaf.NotBefore, NotAfter: f.leaf.NotAfter, Stored: true, InMemory: true,
	}
	if len(names) > 0 {
		info.Name = names[0]
	}
	return []record.Certificate{info}, nil
}

// certNames returns a certificate's DNS names and addresses, or its
// subject's common name when it has neither.
func certNames(leaf *x509.Certificate) []string {
	names := slices.Clone(leaf.DNSNames)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && leaf.Subject.CommonName != "" {
		names = append(names, leaf.Subject.CommonName)
	}
	return names
}

// certDirectoryURL is the directory URL at the first name of the
// relay's certificate (a name without "*."), on the port the ACME API
// listens on.
func certDirectoryURL(leaf *x509.Certificate, addr net.Addr) string {
	host := "localhost"
	if leaf != nil {
		for _, n := range certNames(leaf) {
			if !strings.HasPrefix(n, "*.") {
				host = n
				break
			}
		}
	}
	if tcp, ok := addr.(*net.TCPAddr); ok && tcp.Port != 443 {
		host = net.JoinHostPort(host, strconv.Itoa(tcp.Port))
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return "https://" + host + "/directory"
}

// relayTLS returns the TLS configuration of the ACME listener: the given
// certificate, or an autotls Manager's for the names (tls-alpn-01 on the
// listener itself).
func (a *app) relayTLS(cfg *relayConfig, store storage.Storage, rt *relayRuntime, logger *slog.Logger) (*tls.Config, error) {
	t := &cfg.TLS
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, usagef("tls.cert_file %s and tls.key_file %s: %v", t.CertFile, t.KeyFile, err)
		}
		if cert.Leaf == nil {
			if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
				return nil, usagef("tls.cert_file %s: %v", t.CertFile, err)
			}
		}
		rt.fileLeaf = cert.Leaf
		// The status page needs a Manager; this one manages nothing.
		rt.manager = &autotls.Manager{Storage: store, Logger: logger}
		return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}, nil
	}
	hosts, err := autotls.NewHostWhitelist(t.Names...)
	if err != nil {
		return nil, usagef("tls.names: %v", err)
	}
	dir, _ := directoryURL(t.CA)
	roots, err := rootsOf(t.CARoots, "tls.ca_roots")
	if err != nil {
		return nil, err
	}
	eab, err := a.eabOf(t.EAB, "tls.eab")
	if err != nil {
		return nil, err
	}
	m := &autotls.Manager{
		Hosts:         hosts,
		Issuers:       []autotls.Issuer{{DirectoryURL: dir, Email: t.Email, ExternalAccountBinding: eab}},
		RootCAs:       roots,
		AcceptTOS:     t.AcceptTOS,
		Storage:       store,
		DisableHTTP01: true,
		AuditLog:      rt.trail,
		Logger:        logger,
	}
	if err := m.Validate(); err != nil {
		return nil, usagef("the relay's certificate: %v", err)
	}
	rt.manager = m
	rt.closers = append(rt.closers, func() { m.Close() })
	return m.TLSConfig(), nil
}

// relayUpstream builds one upstream.
func (a *app) relayUpstream(ctx context.Context, store storage.Storage, u *relayUpstreamConfig, field string, http01 *solvers.HTTP01, rt *relayRuntime, logger *slog.Logger) (*relay.Upstream, error) {
	dir, _ := directoryURL(u.Directory)
	roots, err := rootsOf(u.CARoots, field+".ca_roots")
	if err != nil {
		return nil, err
	}
	eab, err := a.eabOf(u.EAB, field+".eab")
	if err != nil {
		return nil, err
	}
	key, created, err := upstreamKey(ctx, store, u)
	if err != nil {
		return nil, err
	}
	if created {
		logger.Info("tlsmint relay: created the account key of an upstream", "upstream", u.Name)
	}
	up := &relay.Upstream{
		Name: u.Name,
		Client: &acme.Client{
			DirectoryURL: dir, Key: key, RootCAs: roots, UserAgent: "tlsmint-relay",
			Observer: multiObserver{rt.trail, rt.collector}, Logger: logger,
		},
		Account: acme.Account{TermsOfServiceAgreed: u.AcceptTOS, ExternalAccountBinding: eab},
		Solvers: map[string]acme.Solver{},
	}
	if u.Email != "" {
		up.Account.Contact, _ = contacts([]string{u.Email})
	}
	for _, ch := range u.Challenges {
		switch ch {
		case acme.ChallengeHTTP01:
			up.Solvers[ch] = http01
		case acme.ChallengeDNSPersist01:
			up.Solvers[ch] = newRelayPersist(u.Name, u.DNSPersist, logger)
		}
		up.ChallengeTypes = append(up.ChallengeTypes, ch)
	}
	return up, nil
}

// relayBaseURL is the configuration's base_url or its default.
func relayBaseURL(cfg *relayConfig) string {
	if cfg.BaseURL != "" {
		return strings.TrimSuffix(cfg.BaseURL, "/")
	}
	if len(cfg.TLS.Names) == 0 {
		return ""
	}
	host := cfg.TLS.Names[0]
	if _, port, err := net.SplitHostPort(cfg.Listen); err == nil && port != "443" && port != "https" {
		host = net.JoinHostPort(host, port)
	}
	return "https://" + host
}

// applyTenants creates or replaces the tenants of a tenants file.
func (a *app) applyTenants(ctx context.Context, srv *relay.Server, file string, logger *slog.Logger) error {
	b, err := readSmallFile(file)
	if err != nil {
		return fmt.Errorf("reading tenants_file: %w", err)
	}
	ts, err := parseTenants(b)
	if err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("tenants file %s: %w", file, err)}
	}
	for i, t := range ts {
		if err := srv.PutTenant(ctx, t); err != nil {
			if errors.Is(err, relay.ErrInvalidTenant) {
				return &exitError{code: exitUsage, err: fmt.Errorf("tenants file %s: [%d]: %w", file, i, err)}
			}
			return fmt.Errorf("storing tenant %s: %w", t.ID, err)
		}
	}
	logger.Info("tlsmint relay: tenants applied", "file", file, "tenants", len(ts))
	return nil
}

// adminHandler serves the admin API, the status page at /status and the
// metrics at /metrics. The page and the metrics answer loopback clients
// and clients with the admin token; AdminSources applies to all.
func (rt *relayRuntime) adminHandler(token string, sources []netip.Prefix) http.Handler {
	authorize := func(r *http.Request) error {
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && subtle.ConstantTimeCompare([]byte(tok), []byte(token)) == 1 {
			return nil
		}
		return statuspage.LoopbackOnly(r)
	}
	certSources := []statuspage.CertificateSource{rt.srv}
	if rt.fileLeaf != nil {
		certSources = append(certSources, fileCertSource{rt.fileLeaf})
	}
	status := &statuspage.Handler{Manager: rt.manager, Sources: certSources, Audit: rt.trail, Title: "tlsmint relay", Authorize: authorize}
	prom := rt.collector.Handler()
	mux := http.NewServeMux()
	mux.Handle("/status", status)
	mux.Handle("/metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if authorize(r) != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tlsmint relay"`)
			http.Error(w, "a loopback client or the admin bearer token is required", http.StatusUnauthorized)
			return
		}
		prom.ServeHTTP(w, r)
	}))
	mux.Handle("/", rt.srv.AdminHandler())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/status" || r.URL.Path == "/metrics" {
			if !sourceAllowed(r.RemoteAddr, sources) {
				http.Error(w, "requests from this address are not allowed", http.StatusForbidden)
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

// sourceAllowed reports whether a RemoteAddr is in one of prefixes (or
// prefixes is empty).
func sourceAllowed(remote string, prefixes []netip.Prefix) bool {
	if len(prefixes) == 0 {
		return true
	}
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false
	}
	for _, p := range prefixes {
		if p.Contains(ap.Addr().Unmap()) {
			return true
		}
	}
	return false
}
