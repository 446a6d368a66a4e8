package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/relay"
)

// Defaults of the relay configuration.
const (
	defaultRelayListen     = ":443"
	defaultAdminListen     = "127.0.0.1:8081"
	defaultShutdownTimeout = 10 * time.Second
	defaultReadTimeout     = time.Minute
)

// relayConfig is the relay's configuration file (JSON), documented in
// docs/relay.md. File names in it are relative to the file's folder.
type relayConfig struct {
	// Storage is a folder (created 0700 if missing) or a postgres:// DSN.
	Storage string `json:"storage"`
	// Listen is the address of the ACME API, over HTTPS.
	Listen string `json:"listen,omitempty"`
	// BaseURL is the ACME API's external URL; empty means
	// https://<first TLS name>, with the port when it is not 443, or
	// https://<Host> of each request with given certificate files.
	BaseURL string `json:"base_url,omitempty"`
	// Node names this replica in the audit trail; empty means the host
	// name.
	Node string `json:"node,omitempty"`

	TLS relayTLSConfig `json:"tls"`
	// ClientAuth asks the ACME API's clients for certificates (mTLS).
	ClientAuth *relayClientAuthConfig `json:"client_auth,omitempty"`
	Admin      relayAdminConfig       `json:"admin,omitzero"`
	Upstreams  []relayUpstreamConfig  `json:"upstreams"`

	// HTTP01Listen is where the relay answers its upstreams' http-01
	// challenges (tokens in the storage, so any replica answers).
	HTTP01Listen string `json:"http01_listen,omitempty"`

	// TenantsFile is a JSON list of tenants ({"id", "policy"}) created or
	// replaced at start.
	TenantsFile string `json:"tenants_file,omitempty"`

	Anonymous       *relay.Policy        `json:"anonymous,omitempty"`
	Profiles        map[string]string    `json:"profiles,omitempty"`
	TermsOfService  string               `json:"terms_of_service,omitempty"`
	Website         string               `json:"website,omitempty"`
	AllowedSources  []netip.Prefix       `json:"allowed_sources,omitempty"`
	Validator       relayValidatorConfig `json:"validator,omitzero"`
	FinalizeWait    duration             `json:"finalize_wait,omitzero"`
	UpstreamTimeout duration             `json:"upstream_timeout,omitzero"`
	ShutdownTimeout duration             `json:"shutdown_timeout,omitzero"`
	// ReadTimeout bounds the reading of one request, body included, on
	// every listener (http.Server.ReadTimeout), against clients that
	// send their body a byte at a time.
	ReadTimeout    duration `json:"read_timeout,omitzero"`
	AuditRetention duration `json:"audit_retention,omitzero"`
	// SharedNonces makes nonces valid at every replica on the storage
	// (Server.SharedNonces), for NonceLifetime.
	SharedNonces  bool     `json:"shared_nonces,omitempty"`
	NonceLifetime duration `json:"nonce_lifetime,omitzero"`
	// Routes send the orders they match to some upstreams
	// (Server.Routes).
	Routes []relay.Route `json:"routes,omitempty"`
	// Retention is Server.Retention: how long ended orders and
	// certificates are kept, how often the sweeper runs.
	Retention relayRetentionConfig `json:"retention,omitzero"`

	dir string // the file's folder, for relative names
}

// relayRetentionConfig is relay.Retention; zero durations are its
// defaults.
type relayRetentionConfig struct {
	Orders        duration `json:"orders,omitzero"`
	Certificates  duration `json:"certificates,omitzero"`
	SweepInterval duration `json:"sweep_interval,omitzero"`
}

// relayTLSConfig is the relay's own certificate: files, or obtained with
// autotls for Names.
type relayTLSConfig struct {
	CertFile  string          `json:"cert_file,omitempty"`
	KeyFile   string          `json:"key_file,omitempty"`
	Names     []string        `json:"names,omitempty"`
	CA        string          `json:"ca,omitempty"`
	CARoots   string          `json:"ca_roots,omitempty"`
	Email     string          `json:"email,omitempty"`
	AcceptTOS bool            `json:"accept_tos,omitempty"`
	EAB       *relayEABConfig `json:"eab,omitempty"`
}

// relayClientAuthConfig is the ACME API's client certificates: the CAs
// they are verified against, and whether every request needs one
// (Server.RequireClientCert).
type relayClientAuthConfig struct {
	CARoots string `json:"ca_roots"`
	Require bool   `json:"require,omitempty"`
}

// relayAdminConfig is the administration listener: the admin API, the
// status page and the metrics.
type relayAdminConfig struct {
	Listen    string         `json:"listen,omitempty"`
	TokenFile string         `json:"token_file,omitempty"`
	TokenEnv  string         `json:"token_env,omitempty"`
	Sources   []netip.Prefix `json:"sources,omitempty"`
	TLS       bool           `json:"tls,omitempty"`
	// AllowPlainHTTP lets the admin listener serve plain HTTP on an
	// address that is not loopback (behind a TLS-terminating proxy).
	AllowPlainHTTP bool `json:"allow_plain_http,omitempty"`
}

// relayUpstreamConfig is one upstream CA.
type relayUpstreamConfig struct {
	Name       string          `json:"name"`
	Directory  string          `json:"directory"`
	CARoots    string          `json:"ca_roots,omitempty"`
	AccountKey string          `json:"account_key,omitempty"`
	Email      string          `json:"email,omitempty"`
	AcceptTOS  bool            `json:"accept_tos,omitempty"`
	EAB        *relayEABConfig `json:"eab,omitempty"`
	Challenges []string        `json:"challenges,omitempty"`
	// DNSPersist solves dns-persist-01 there, read-only: the operator
	// publishes the records.
	DNSPersist *relayPersistConfig `json:"dns_persist,omitempty"`
}

// relayEABConfig is an External Account Binding: the key ID and where the
// MAC key is (never in the file itself).
type relayEABConfig struct {
	KeyID    string `json:"key_id"`
	HMACFile string `json:"hmac_file,omitempty"`
	HMACEnv  string `json:"hmac_env,omitempty"`
}

// relayValidatorConfig configures the downstream validation.
type relayValidatorConfig struct {
	HTTPPort int      `json:"http_port,omitempty"`
	TLSPort  int      `json:"tls_port,omitempty"`
	Resolver string   `json:"resolver,omitempty"`
	Timeout  duration `json:"timeout,omitzero"`
}

// duration is a time.Duration written as a Go duration string ("10s").
type duration time.Duration

func (d duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`a duration is a string such as "10s" or "5m"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: want a number and a unit, such as 10s or 5m", clip(s, 32))
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", clip(s, 32))
	}
	*d = duration(v)
	return nil
}

// errRelayConfig is wrapped by every error in a configuration file.
var errRelayConfig = errors.New("bad relay configuration")

// configError says which field of the file is wrong and why.
type configError struct {
	field, msg string
}

func (e *configError) Error() string {
	if e.field == "" {
		return e.msg
	}
	return e.field + ": " + e.msg
}

func (e *configError) Is(target error) bool { return target == errRelayConfig }

func cfgErr(field, format string, args ...any) error {
	return &configError{field: field, msg: fmt.Sprintf(format, args...)}
}

// maxConfigSize bounds the configuration and tenants files.
const maxConfigSize = 1 << 20

// parseRelayConfig decodes and checks a configuration file; dir is its
// folder, which relative file names are resolved against. Errors match
// errRelayConfig.
func parseRelayConfig(data []byte, dir string) (*relayConfig, error) {
	if len(data) > maxConfigSize {
		return nil, cfgErr("", "larger than %d bytes", maxConfigSize)
	}
	cfg := new(relayConfig)
	if err := decodeStrict(data, cfg); err != nil {
		return nil, cfgErr("", "%s", err)
	}
	cfg.dir = dir
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// decodeStrict decodes one JSON value into v, refusing unknown fields and
// anything after the value.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line := 1 + bytes.Count(data[:min(int(se.Offset), len(data))], []byte("\n"))
			return fmt.Errorf("not valid JSON (line %d): %s", line, se.Error())
		}
		if errors.Is(err, io.EOF) {
			return errors.New("empty: want a JSON object")
		}
		return fmt.Errorf("%s", clip(err.Error(), 300))
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

// check validates the configuration and fills in defaults.
func (c *relayConfig) check() error {
	if c.Storage == "" {
		return cfgErr("storage", "missing: a folder or a postgres:// DSN")
	}
	if !isPostgres(c.Storage) {
		c.Storage = c.path(c.Storage)
	}
	if c.Listen == "" {
		c.Listen = defaultRelayListen
	}
	if err := checkAddr(c.Listen); err != nil {
		return cfgErr("listen", "%s", err)
	}
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return cfgErr("base_url", "%q is not an https:// URL without query", clip(c.BaseURL, 100))
		}
	}
	if err := c.TLS.check(c); err != nil {
		return err
	}
	if c.ClientAuth != nil {
		if c.ClientAuth.CARoots == "" {
			return cfgErr("client_auth.ca_roots", "missing: the PEM file of the CAs of the clients' certificates")
		}
		c.ClientAuth.CARoots = c.path(c.ClientAuth.CARoots)
	}
	if c.Admin.Listen == "" {
		c.Admin.Listen = defaultAdminListen
	}
	if err := checkAddr(c.Admin.Listen); err != nil {
		return cfgErr("admin.listen", "%s", err)
	}
	if c.Admin.TokenFile == "" && c.Admin.TokenEnv == "" {
		return cfgErr("admin", "no token_file or token_env: the admin API needs a bearer token (never in this file)")
	}
	if c.Admin.TokenFile != "" && c.Admin.TokenEnv != "" {
		return cfgErr("admin", "both token_file and token_env: give one")
	}
	c.Admin.TokenFile, c.TenantsFile = c.path(c.Admin.TokenFile), c.path(c.TenantsFile)
	if c.Admin.TLS && c.TLS.CertFile == "" && len(c.TLS.Names) == 0 {
		return cfgErr("admin.tls", "needs the relay's certificate (tls)")
	}
	if !c.Admin.TLS && !c.Admin.AllowPlainHTTP && !loopbackListen(c.Admin.Listen) {
		return cfgErr("admin.listen", "%s is not a loopback address and admin.tls is off: the admin token and the EAB MAC keys would cross the network in clear; set admin.tls, listen on 127.0.0.1, or set admin.allow_plain_http behind a TLS-terminating proxy", c.Admin.Listen)
	}
	if c.HTTP01Listen != "" {
		if err := checkAddr(c.HTTP01Listen); err != nil {
			return cfgErr("http01_listen", "%s", err)
		}
	}
	if len(c.Upstreams) == 0 {
		return cfgErr("upstreams", "none: the relay needs at least one upstream CA")
	}
	seen := map[string]bool{}
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		field := fmt.Sprintf("upstreams[%d]", i)
		if err := u.check(c, field); err != nil {
			return err
		}
		if seen[u.Name] {
			return cfgErr(field+".name", "%q is used twice", u.Name)
		}
		seen[u.Name] = true
	}
	for i, r := range c.Routes {
		field := fmt.Sprintf("routes[%d]", i)
		if len(r.Upstreams) == 0 {
			return cfgErr(field+".upstreams", "missing: the names of the upstreams to try, in order")
		}
		for j, n := range r.Upstreams {
			if !seen[n] {
				return cfgErr(fmt.Sprintf("%s.upstreams[%d]", field, j), "no upstream is called %q", clip(n, 64))
			}
		}
	}
	if c.Validator.Resolver != "" {
		if _, _, err := net.SplitHostPort(c.Validator.Resolver); err != nil {
			return cfgErr("validator.resolver", "%q: want host:port", clip(c.Validator.Resolver, 64))
		}
	}
	for name, p := range map[string]int{"validator.http_port": c.Validator.HTTPPort, "validator.tls_port": c.Validator.TLSPort} {
		if p < 0 || p > 65535 {
			return cfgErr(name, "%d is not a port", p)
		}
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = duration(defaultShutdownTimeout)
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = duration(defaultReadTimeout)
	}
	return nil
}

func (t *relayTLSConfig) check(c *relayConfig) error {
	files := t.CertFile != "" || t.KeyFile != ""
	switch {
	case files && len(t.Names) > 0:
		return cfgErr("tls", "both cert_file/key_file and names: give a certificate or names to obtain one for")
	case files && (t.CertFile == "" || t.KeyFile == ""):
		return cfgErr("tls", "cert_file and key_file go together")
	case !files && len(t.Names) == 0:
		return cfgErr("tls", "no certificate: give cert_file and key_file, or names to obtain one for")
	case files && (t.CA != "" || t.CARoots != "" || t.Email != "" || t.AcceptTOS || t.EAB != nil):
		return cfgErr("tls", "ca, ca_roots, email, accept_tos and eab are for names (a certificate obtained by the relay)")
	}
	for i, n := range t.Names {
		norm, err := autotls.NormalizeName(n)
		if err != nil {
			return cfgErr(fmt.Sprintf("tls.names[%d]", i), "%q is not a DNS name (no wildcards, no addresses)", clip(n, 64))
		}
		t.Names[i] = norm
	}
	if len(t.Names) > 0 {
		if t.CA == "" {
			t.CA = "letsencrypt"
		}
		if _, err := directoryURL(t.CA); err != nil {
			return cfgErr("tls.ca", "%s", err)
		}
		if !t.AcceptTOS {
			return cfgErr("tls.accept_tos", "must be true to obtain the relay's certificate: read the CA's terms of service")
		}
		if err := t.EAB.check("tls.eab"); err != nil {
			return err
		}
	}
	t.CertFile, t.KeyFile, t.CARoots = c.path(t.CertFile), c.path(t.KeyFile), c.path(t.CARoots)
	if t.EAB != nil {
		t.EAB.HMACFile = c.path(t.EAB.HMACFile)
	}
	return nil
}

// upstreamChallenges are the types an upstream may list.
var upstreamChallenges = []string{acme.ChallengeHTTP01, acme.ChallengeDNSPersist01}

func (u *relayUpstreamConfig) check(c *relayConfig, field string) error {
	if u.Directory == "" {
		return cfgErr(field+".directory", "missing: a CA short name or an https:// directory URL")
	}
	if _, err := directoryURL(u.Directory); err != nil {
		return cfgErr(field+".directory", "%s", err)
	}
	if u.Name == "" {
		u.Name = u.Directory
	}
	if len(u.Name) > 200 || strings.ContainsFunc(u.Name, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return cfgErr(field+".name", "%q: at most 200 characters, no control characters", clip(u.Name, 64))
	}
	if !u.AcceptTOS {
		return cfgErr(field+".accept_tos", "must be true: read the CA's terms of service")
	}
	if u.Email != "" {
		if _, err := contacts([]string{u.Email}); err != nil {
			return cfgErr(field+".email", "%q: want a bare address such as ops@example.com", clip(u.Email, 64))
		}
	}
	if err := u.EAB.check(field + ".eab"); err != nil {
		return err
	}
	if err := u.DNSPersist.check(field + ".dns_persist"); err != nil {
		return err
	}
	switch {
	case len(u.Challenges) > 0:
	case u.DNSPersist != nil:
		u.Challenges = []string{acme.ChallengeDNSPersist01}
	case c.HTTP01Listen != "":
		u.Challenges = []string{acme.ChallengeHTTP01}
	}
	if u.DNSPersist != nil && !slices.Contains(u.Challenges, acme.ChallengeDNSPersist01) {
		return cfgErr(field+".challenges", "dns_persist is set but dns-persist-01 is not listed")
	}
	for i, ch := range u.Challenges {
		if !slices.Contains(upstreamChallenges, ch) {
			return cfgErr(fmt.Sprintf("%s.challenges[%d]", field, i), "%q: the relay command solves %s upstream", clip(ch, 32), strings.Join(upstreamChallenges, ", "))
		}
		if ch == acme.ChallengeHTTP01 && c.HTTP01Listen == "" {
			return cfgErr(fmt.Sprintf("%s.challenges[%d]", field, i), "http-01 needs http01_listen")
		}
		if ch == acme.ChallengeDNSPersist01 && u.DNSPersist == nil {
			return cfgErr(fmt.Sprintf("%s.challenges[%d]", field, i), "dns-persist-01 needs dns_persist")
		}
		if slices.Contains(u.Challenges[:i], ch) {
			return cfgErr(fmt.Sprintf("%s.challenges[%d]", field, i), "%q is listed twice", ch)
		}
	}
	u.CARoots, u.AccountKey = c.path(u.CARoots), c.path(u.AccountKey)
	if u.EAB != nil {
		u.EAB.HMACFile = c.path(u.EAB.HMACFile)
	}
	return nil
}

func (e *relayEABConfig) check(field string) error {
	if e == nil {
		return nil
	}
	if e.KeyID == "" {
		return cfgErr(field+".key_id", "missing")
	}
	if (e.HMACFile == "") == (e.HMACEnv == "") {
		return cfgErr(field, "give the MAC key's hmac_file or hmac_env (one of them; never the key itself)")
	}
	return nil
}

// isPostgres reports whether a storage is a PostgreSQL DSN.
func isPostgres(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// path resolves a file name of the configuration against its folder.
func (c *relayConfig) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}

// checkAddr checks a listen address host:port.
func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want host:port or :port", clip(addr, 64))
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("%q: bad port", clip(addr, 64))
	}
	return nil
}

// directoryURL returns the directory URL a CA short name or URL names.
func directoryURL(ca string) (string, error) {
	if u, ok := caNames[strings.ToLower(ca)]; ok {
		return u, nil
	}
	u, err := url.Parse(ca)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("%q: want letsencrypt, letsencrypt-staging, zerossl, google or an https:// directory URL", clip(ca, 100))
	}
	return ca, nil
}

// loopbackListen reports whether a listen address ("host:port") takes
// only loopback connections: localhost or a loopback address; an empty
// host is every interface.
func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// parseTenants decodes a tenants file: a JSON list of {"id", "policy"}.
func parseTenants(data []byte) ([]relay.Tenant, error) {
	if len(data) > maxConfigSize {
		return nil, cfgErr("", "larger than %d bytes", maxConfigSize)
	}
	var ts []relay.Tenant
	if err := decodeStrict(data, &ts); err != nil {
		return nil, cfgErr("", "%s (want a list of {\"id\": …, \"policy\": {…}})", err)
	}
	seen := map[string]bool{}
	for i, t := range ts {
		if t.ID == "" {
			return nil, cfgErr(fmt.Sprintf("[%d].id", i), "missing")
		}
		if seen[t.ID] {
			return nil, cfgErr(fmt.Sprintf("[%d].id", i), "%q is listed twice", clip(t.ID, 64))
		}
		seen[t.ID] = true
	}
	return ts, nil
}
