package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/relay"
	"github.com/tlsmint/tlsmint/statuspage"
)

// validConfig is a configuration that parses; tests break one field.
func validConfig() map[string]any {
	return map[string]any{
		"storage": "/var/lib/tlsmint-relay",
		"tls":     map[string]any{"names": []string{"acme.internal.example"}, "accept_tos": true},
		"admin":   map[string]any{"token_file": "admin-token"},
		"upstreams": []any{map[string]any{
			"name": "le", "directory": "letsencrypt-staging", "accept_tos": true,
		}},
	}
}

func TestRelayConfig(t *testing.T) {
	b, _ := json.Marshal(validConfig())
	cfg, err := parseRelayConfig(b, "/etc/tlsmint")
	if err != nil {
		t.Fatalf("parseRelayConfig: %v", err)
	}
	if cfg.Listen != ":443" || cfg.Admin.Listen != "127.0.0.1:8081" || cfg.Admin.TokenFile != "/etc/tlsmint/admin-token" || cfg.TLS.CA != "letsencrypt" || time.Duration(cfg.ShutdownTimeout) != 10*time.Second {
		t.Errorf("defaults: %+v", cfg)
	}
	if got := relayBaseURL(cfg); got != "https://acme.internal.example" {
		t.Errorf("base URL = %q, want https://acme.internal.example", got)
	}
	cfg.Listen = ":8443"
	if got := relayBaseURL(cfg); got != "https://acme.internal.example:8443" {
		t.Errorf("base URL = %q, want the port", got)
	}
	if len(cfg.Upstreams[0].Challenges) != 0 {
		t.Errorf("challenges without http01_listen = %v, want none", cfg.Upstreams[0].Challenges)
	}
	// dns_persist alone: dns-persist-01 only, even with http01_listen;
	// listed with http-01 (for IP addresses), both in order.
	c := validConfig()
	c["http01_listen"] = ":80"
	c["upstreams"] = []any{
		map[string]any{"name": "a", "directory": "letsencrypt", "accept_tos": true, "dns_persist": map[string]any{"resolvers": []string{"10.0.0.53:53"}, "wildcard": true, "issuer_domain_name": "letsencrypt.org"}},
		map[string]any{"name": "b", "directory": "letsencrypt", "accept_tos": true, "dns_persist": map[string]any{}, "challenges": []string{"dns-persist-01", "http-01"}},
	}
	b, _ = json.Marshal(c)
	if cfg, err = parseRelayConfig(b, "/etc"); err != nil {
		t.Fatalf("dns_persist: %v", err)
	}
	if got := cfg.Upstreams[0].Challenges; len(got) != 1 || got[0] != acme.ChallengeDNSPersist01 || !cfg.Upstreams[0].DNSPersist.Wildcard {
		t.Errorf("challenges with dns_persist = %v, want [dns-persist-01]", got)
	}
	if got := cfg.Upstreams[1].Challenges; len(got) != 2 || got[0] != acme.ChallengeDNSPersist01 || got[1] != acme.ChallengeHTTP01 {
		t.Errorf("challenges = %v, want [dns-persist-01 http-01]", got)
	}

	bad := []struct {
		name   string
		modify func(map[string]any)
		want   string
	}{
		{"no storage", func(c map[string]any) { delete(c, "storage") }, "storage: missing"},
		{"unknown field", func(c map[string]any) { c["listen_addr"] = ":443" }, `unknown field "listen_addr"`},
		{"bad listen", func(c map[string]any) { c["listen"] = "443" }, "listen:"},
		{"bad base URL", func(c map[string]any) { c["base_url"] = "http://acme.example" }, "base_url:"},
		{"no certificate", func(c map[string]any) { c["tls"] = map[string]any{} }, "tls: no certificate"},
		{"both certificate and names", func(c map[string]any) {
			c["tls"] = map[string]any{"names": []string{"a.example"}, "cert_file": "c", "key_file": "k", "accept_tos": true}
		}, "tls: both"},
		{"cert without key", func(c map[string]any) { c["tls"] = map[string]any{"cert_file": "c"} }, "go together"},
		{"wildcard name", func(c map[string]any) {
			c["tls"] = map[string]any{"names": []string{"*.example.com"}, "accept_tos": true}
		}, "tls.names[0]"},
		{"terms not accepted", func(c map[string]any) { c["tls"] = map[string]any{"names": []string{"a.example"}} }, "tls.accept_tos"},
		{"http CA", func(c map[string]any) {
			c["tls"] = map[string]any{"names": []string{"a.example"}, "accept_tos": true, "ca": "http://ca.example/dir"}
		}, "tls.ca:"},
		{"no admin token", func(c map[string]any) { c["admin"] = map[string]any{} }, "admin: no token_file or token_env"},
		{"two admin tokens", func(c map[string]any) { c["admin"] = map[string]any{"token_file": "t", "token_env": "T"} }, "both token_file and token_env"},
		{"admin plain HTTP off loopback", func(c map[string]any) { c["admin"] = map[string]any{"token_env": "T", "listen": "0.0.0.0:8081"} }, "admin.listen: 0.0.0.0:8081 is not a loopback address and admin.tls is off"},
		{"admin plain HTTP on every interface", func(c map[string]any) { c["admin"] = map[string]any{"token_env": "T", "listen": ":8081"} }, "admin.allow_plain_http"},
		{"admin plain HTTP on a private address", func(c map[string]any) { c["admin"] = map[string]any{"token_env": "T", "listen": "10.0.0.5:8081"} }, "not a loopback address"},
		{"admin TLS with a bad listen", func(c map[string]any) { c["admin"] = map[string]any{"token_env": "T", "listen": "localhost"} }, "admin.listen"},
		{"no upstream", func(c map[string]any) { c["upstreams"] = []any{} }, "upstreams: none"},
		{"upstream without directory", func(c map[string]any) { c["upstreams"] = []any{map[string]any{"accept_tos": true}} }, "upstreams[0].directory: missing"},
		{"upstream terms", func(c map[string]any) { c["upstreams"] = []any{map[string]any{"directory": "zerossl"}} }, "upstreams[0].accept_tos"},
		{"two upstreams one name", func(c map[string]any) {
			u := map[string]any{"name": "x", "directory": "zerossl", "accept_tos": true}
			c["upstreams"] = []any{u, u}
		}, `upstreams[1].name: "x" is used twice`},
		{"EAB MAC in the file", func(c map[string]any) {
			c["upstreams"] = []any{map[string]any{"directory": "zerossl", "accept_tos": true, "eab": map[string]any{"key_id": "k", "hmac_key": "secret"}}}
		}, `unknown field "hmac_key"`},
		{"EAB without MAC", func(c map[string]any) {
			c["upstreams"] = []any{map[string]any{"directory": "zerossl", "accept_tos": true, "eab": map[string]any{"key_id": "k"}}}
		}, "upstreams[0].eab: give the MAC key's hmac_file or hmac_env"},
		{"http-01 without listener", func(c map[string]any) {
			c["upstreams"] = []any{map[string]any{"directory": "zerossl", "accept_tos": true, "challenges": []string{"http-01"}}}
		}, "http-01 needs http01_listen"},
		{"unknown challenge", func(c map[string]any) {
			c["upstreams"] = []any{map[string]any{"directory": "zerossl", "accept_tos": true, "challenges": []string{"dns-42"}}}
		}, `challenges[0]: "dns-42"`},
		{"dns-persist-01 without dns_persist", func(c map[string]any) {
			c["upstreams"] = []any{map[string]any{"directory": "zerossl", "accept_tos": true, "challenges": []string{"dns-persist-01"}}}
		}, "upstreams[0].challenges[0]: dns-persist-01 needs dns_persist"},
		{"dns_persist not listed", func(c map[string]any) {
			c["http01_listen"] = ":80"
			c["upstreams"] = []any{map[string]any{"directory": "zerossl", "accept_tos": true, "challenges": []string{"http-01"}, "dns_persist": map[string]any{}}}
		}, "upstreams[0].challenges: dns_persist is set but dns-persist-01 is not listed"},
		{"challenge twice", func(c map[string]any) {
			c["upstreams"] = []any{map[string]any{"directory": "zerossl", "accept_tos": true, "challenges": []string{"dns-persist-01", "dns-persist-01"}, "dns_persist": map[string]any{}}}
		}, `upstreams[0].challenges[1]: "dns-persist-01" is listed twice`},
		{"dns_persist bad resolver", func(c map[string]any) {
			c["upstreams"] = []any{map[string]any{"directory": "zerossl", "accept_tos": true, "dns_persist": map[string]any{"resolvers": []string{"10.0.0.53"}}}}
		}, `upstreams[0].dns_persist.resolvers[0]: "10.0.0.53": want host:port`},
		{"dns_persist bad port", func(c map[string]any) {
			c["upstreams"] = []any{map[string]any{"directory": "zerossl", "accept_tos": true, "dns_persist": map[string]any{"nameserver_port": 70000}}}
		}, "upstreams[0].dns_persist.nameserver_port: 70000 is not a port"},
		{"dns_persist bad issuer", func(c map[string]any) {
			c["upstreams"] = []any{map[string]any{"directory": "zerossl", "accept_tos": true, "dns_persist": map[string]any{"issuer_domain_name": "Lets Encrypt"}}}
		}, "upstreams[0].dns_persist.issuer_domain_name"},
		{"dns_persist unknown field", func(c map[string]any) {
			c["upstreams"] = []any{map[string]any{"directory": "zerossl", "accept_tos": true, "dns_persist": map[string]any{"provider": "cloudflare"}}}
		}, `unknown field "provider"`},
		{"bad email", func(c map[string]any) {
			c["upstreams"] = []any{map[string]any{"directory": "zerossl", "accept_tos": true, "email": "ops at example"}}
		}, "upstreams[0].email"},
		{"bad duration", func(c map[string]any) { c["finalize_wait"] = "3 seconds" }, "duration"},
		{"numeric duration", func(c map[string]any) { c["finalize_wait"] = 3 }, "a duration is a string"},
		{"negative duration", func(c map[string]any) { c["shutdown_timeout"] = "-1s" }, "negative"},
		{"bad source", func(c map[string]any) { c["allowed_sources"] = []string{"10.0.0.0/33"} }, "10.0.0.0/33"},
		{"bad anonymous policy", func(c map[string]any) { c["anonymous"] = map[string]any{"namez": []string{"x"}} }, `unknown field "namez"`},
		{"bad resolver", func(c map[string]any) { c["validator"] = map[string]any{"resolver": "10.0.0.53"} }, "validator.resolver"},
		{"bad port", func(c map[string]any) { c["validator"] = map[string]any{"http_port": 70000} }, "validator.http_port"},
		{"route to no upstream", func(c map[string]any) {
			c["routes"] = []any{map[string]any{"ip_ranges": []string{"0.0.0.0/0"}, "upstreams": []string{"nope"}}}
		}, `routes[0].upstreams[0]: no upstream is called "nope"`},
		{"client_auth without roots", func(c map[string]any) { c["client_auth"] = map[string]any{"require": true} }, "client_auth.ca_roots: missing"},
		{"client_auth unknown field", func(c map[string]any) { c["client_auth"] = map[string]any{"ca_roots": "c.pem", "mode": "require"} }, `unknown field "mode"`},
		{"route without upstreams", func(c map[string]any) { c["routes"] = []any{map[string]any{"names": []string{"a.example"}}} }, "routes[0].upstreams: missing"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.modify(c)
			b, _ := json.Marshal(c)
			_, err := parseRelayConfig(b, "/etc")
			if !errors.Is(err, errRelayConfig) {
				t.Fatalf("got %v, want an error matching errRelayConfig", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
	for name, data := range map[string]string{
		"empty":        "",
		"not JSON":     "storage = /var/lib",
		"two values":   `{"storage": "/x"} {}`,
		"a list":       `[]`,
		"syntax error": "{\n\"storage\": \"/x\",\n}",
		"huge":         `{"storage": "` + strings.Repeat("x", maxConfigSize) + `"}`,
	} {
		if _, err := parseRelayConfig([]byte(data), "/etc"); !errors.Is(err, errRelayConfig) {
			t.Errorf("%s: got %v, want an error matching errRelayConfig", name, err)
		}
	}
	if _, err := parseRelayConfig([]byte("{\n\"storage\": \"/x\",\n}"), "/etc"); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("syntax error: got %v, want the line", err)
	}
}

func TestParseTenants(t *testing.T) {
	ts, err := parseTenants([]byte(`[{"id": "web", "policy": {"names": ["web.example.com"], "rate_limit": {"orders": 5, "period": "1h"}}}]`))
	if err != nil || len(ts) != 1 || ts[0].ID != "web" || ts[0].Policy.RateLimit.Orders != 5 {
		t.Fatalf("parseTenants = %+v, %v", ts, err)
	}
	for _, in := range []string{`{}`, `[{"policy": {}}]`, `[{"id": "a"}, {"id": "a"}]`, `[{"id": "a", "policy": {"names": 1}}]`, `[{"id": "a", "extra": 1}]`} {
		if _, err := parseTenants([]byte(in)); !errors.Is(err, errRelayConfig) {
			t.Errorf("parseTenants(%s): got %v, want errRelayConfig", in, err)
		}
	}
}

// FuzzRelayConfig: any file gives a configuration or an error matching
// errRelayConfig, never a panic; a configuration parses again the same.
func FuzzRelayConfig(f *testing.F) {
	b, _ := json.Marshal(validConfig())
	f.Add(b)
	f.Add([]byte(`{"storage": "x", "tls": {"cert_file": "c", "key_file": "k"}, "admin": {"token_env": "T"}, "upstreams": [{"directory": "https://ca.example/dir", "accept_tos": true}], "finalize_wait": "1s"}`))
	f.Add([]byte(`[{"id": "web", "policy": {}}]`))
	f.Add([]byte(`{"storage": "x", "tls": {"cert_file": "c", "key_file": "k"}, "admin": {"token_env": "T"}, "upstreams": [{"directory": "letsencrypt", "accept_tos": true, "dns_persist": {"resolvers": ["10.0.0.53:53"], "nameserver_port": 5353, "issuer_domain_name": "letsencrypt.org", "wildcard": true}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parseRelayConfig(data, "/etc")
		if err != nil {
			if !errors.Is(err, errRelayConfig) {
				t.Fatalf("error %v does not match errRelayConfig", err)
			}
			return
		}
		again, err := json.Marshal(cfg)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		if _, err := parseRelayConfig(again, "/etc"); err != nil {
			t.Fatalf("a configuration does not parse again: %v\n%s", err, again)
		}
		parseTenants(data)
	})
}

// TestRelayCommandErrors: a wrong configuration, token or port is a
// clear message and exit 2 (or 1), before anything is served.
func TestRelayCommandErrors(t *testing.T) {
	dir := t.TempDir()
	runCmd(t, nil, "relay").fails(t, exitUsage, "pass --config FILE")
	runCmd(t, nil, "relay", "--config", filepath.Join(dir, "missing.json")).fails(t, exitUsage, "does not exist")
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"storage": "s", "bogus": 1}`), 0o600)
	runCmd(t, nil, "relay", "--config", bad).fails(t, exitUsage, "relay configuration", `unknown field "bogus"`)

	cfg := validConfig()
	cfg["storage"] = "store"
	cfg["admin"] = map[string]any{"token_env": "TOKEN", "listen": "127.0.0.1:0"}
	file := filepath.Join(dir, "relay.json")
	writeJSON(t, file, cfg)
	runCmd(t, nil, "relay", "--config", file).fails(t, exitUsage, "TOKEN is empty")
	runCmd(t, map[string]string{"TOKEN": "short"}, "relay", "--config", file).fails(t, exitUsage, "at least 16")

	// The tenant commands need somewhere to go, and check their flags.
	runCmd(t, nil, "relay", "tenant", "list").fails(t, exitUsage, "no relay to talk to")
	runCmd(t, nil, "relay", "tenant", "add", "x", "--config", file).fails(t, exitUsage, "no policy")
	runCmd(t, nil, "relay", "tenant", "add", "x", "--config", file, "--ip", "10.0.0.0/99").fails(t, exitUsage, "--ip")
	runCmd(t, nil, "relay", "tenant", "add", "x", "--config", file, "--name", "a.example", "--validation-target", "loopback").fails(t, exitUsage, "--validation-target")
	runCmd(t, nil, "relay", "tenant", "add", "x", "--config", file, "--name", "a.example", "--rate-limit", "5").fails(t, exitUsage, "--rate-limit")
	runCmd(t, nil, "relay", "tenant", "add", "x", "--config", file, "--name", "a.example", "--policy", "p.json").fails(t, exitUsage, "do not go together")
	runCmd(t, nil, "relay", "tenant", "add", "Bad/ID", "--config", file, "--name", "a.example").fails(t, exitUsage, "invalid tenant")
	runCmd(t, nil, "relay", "tenant", "add", "x", "--config", file, "--name", "bad..name").fails(t, exitUsage, "invalid tenant")
	runCmd(t, nil, "relay", "tenant", "remove", "x", "--config", file).fails(t, exitUsage, "--yes")
	runCmd(t, nil, "relay", "tenant", "remove", "x", "--config", file, "--yes").fails(t, exitFailure, "HTTP 404")
	runCmd(t, nil, "relay", "eab", "mint", "nobody", "--config", file).fails(t, exitFailure, "HTTP 404", "no such tenant")
	runCmd(t, nil, "relay", "eab", "list", "x", "--admin", "ftp://x").fails(t, exitUsage, "--admin")
	runCmd(t, nil, "relay", "eab", "list", "x", "--admin", "http://127.0.0.1:1").fails(t, exitUsage, "TLSMINT_RELAY_ADMIN_TOKEN is empty")
	runCmd(t, map[string]string{"TLSMINT_RELAY_ADMIN_TOKEN": "t"}, "relay", "eab", "list", "x", "--admin", "http://127.0.0.1:1").fails(t, exitFailure, "cannot reach the relay's admin API")
}

// TestRelayDirectStorage: tenants and EAB keys made directly in the
// storage (no relay running), with a policy file, listed and removed.
func TestRelayDirectStorage(t *testing.T) {
	dir := t.TempDir()
	cfg := validConfig()
	cfg["storage"] = "store"
	file := filepath.Join(dir, "relay.json")
	writeJSON(t, file, cfg)
	pol := filepath.Join(dir, "policy.json")
	os.WriteFile(pol, []byte(`{"names": ["ci.example.com"], "key_types": ["P-256"], "max_names": 5}`), 0o600)
	runCmd(t, nil, "relay", "tenant", "add", "ci", "--config", file, "--policy", pol).ok(t)
	var mint struct {
		KeyID   string `json:"key_id"`
		HMACKey string `json:"hmac_key"`
	}
	runCmd(t, nil, "relay", "eab", "mint", "ci", "--config", file, "--json").ok(t).decode(t, &mint)
	if mac, err := acme.DecodeEABKey(mint.HMACKey); err != nil || len(mac) != 32 {
		t.Fatalf("minted MAC key %q: %v (%d bytes), want 32 bytes", mint.HMACKey, err, len(mac))
	}
	r := runCmd(t, nil, "relay", "eab", "list", "ci", "--config", file).ok(t)
	if !strings.Contains(r.stdout, mint.KeyID) || strings.Contains(r.stdout, mint.HMACKey) {
		t.Errorf("eab list shows %q, want the key ID and never the MAC key", r.stdout)
	}
	// The storage holds the MAC key: every file is 0600.
	files := 0
	filepath.WalkDir(filepath.Join(dir, "store"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files++
			if fi, _ := d.Info(); fi.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v, want 0600", p, fi.Mode().Perm())
			}
		}
		return nil
	})
	if files == 0 {
		t.Error("nothing stored")
	}
	r = runCmd(t, nil, "relay", "tenant", "list", "--config", file).ok(t)
	if !strings.Contains(r.stdout, "ci.example.com") {
		t.Errorf("tenant list = %q", r.stdout)
	}
	runCmd(t, nil, "relay", "eab", "remove", mint.KeyID, "--config", file).ok(t)
	runCmd(t, nil, "relay", "eab", "remove", mint.KeyID, "--config", file).fails(t, exitFailure, "HTTP 404")
	runCmd(t, nil, "relay", "tenant", "remove", "ci", "--config", file, "--yes").ok(t)
	var ts []any
	runCmd(t, nil, "relay", "tenant", "list", "--config", file, "--json").ok(t).decode(t, &ts)
	if len(ts) != 0 {
		t.Errorf("tenants after remove: %v", ts)
	}
}

// TestRelayTenantAddIgnoresCertEnv: TLSMINT_KEY_TYPE and TLSMINT_PROFILE,
// the defaults of obtain and renew, do not become the key types and
// profiles of a tenant's policy.
func TestRelayTenantAddIgnoresCertEnv(t *testing.T) {
	dir := t.TempDir()
	cfg := validConfig()
	cfg["storage"] = "store"
	file := filepath.Join(dir, "relay.json")
	writeJSON(t, file, cfg)
	env := map[string]string{"TLSMINT_KEY_TYPE": "p384", "TLSMINT_PROFILE": "shortlived"}
	runCmd(t, env, "relay", "tenant", "add", "web", "--config", file, "--name", "web.example.com").ok(t)
	var ts []relay.Tenant
	runCmd(t, env, "relay", "tenant", "list", "--config", file, "--json").ok(t).decode(t, &ts)
	if len(ts) != 1 || len(ts[0].Policy.KeyTypes) != 0 || len(ts[0].Policy.Profiles) != 0 {
		t.Fatalf("tenants = %+v, want web with every key type and profile allowed", ts)
	}
	// Given on the command line, they are the policy's.
	runCmd(t, env, "relay", "tenant", "add", "web", "--config", file, "--name", "web.example.com", "--key-type", "P-256", "--replace").ok(t)
	runCmd(t, env, "relay", "tenant", "list", "--config", file, "--json").ok(t).decode(t, &ts)
	if len(ts) != 1 || !slices.Equal(ts[0].Policy.KeyTypes, []string{"P-256"}) || len(ts[0].Policy.Profiles) != 0 {
		t.Fatalf("tenants = %+v, want web with key types [P-256]", ts)
	}
}

// TestRelayCertFiles: with cert_file and key_file the relay serves the
// given certificate, and its URLs follow the request's Host.
func TestRelayCertFiles(t *testing.T) {
	ca := newCA(t, testpebble.Options{})
	dir := t.TempDir()
	writeRelayCert(t, dir, "relay.internal.example")
	os.WriteFile(filepath.Join(dir, "token"), []byte("0123456789abcdef-token\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "tenants.json"), []byte(`[{"id": "web", "policy": {"names": ["web.example.com"]}}]`), 0o600)
	cfg := map[string]any{
		"storage":      "store",
		"listen":       "127.0.0.1:0",
		"tls":          map[string]any{"cert_file": "relay.crt", "key_file": "relay.key"},
		"admin":        map[string]any{"listen": "127.0.0.1:0", "token_file": "token"},
		"upstreams":    []any{map[string]any{"directory": ca.DirectoryURL(), "ca_roots": ca.rootsFile, "accept_tos": true, "account_key": "up.key"}},
		"tenants_file": "tenants.json",
	}
	file := filepath.Join(dir, "relay.json")
	writeJSON(t, file, cfg)
	r := startRelay(t, file, nil)
	m := regexp.MustCompile(`listening on (\S+)`).FindStringSubmatch(r.stderr.String())
	if m == nil {
		t.Fatalf("no listening line:\n%s", r.stderr.String())
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := hc.Get("https://" + m[1] + "/directory")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d acme.Directory
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	if d.NewOrder != "https://"+m[1]+"/new-order" || !d.Meta.ExternalAccountRequired {
		t.Errorf("directory = %+v, want URLs of the request's Host and EAB required", d)
	}
	// The start-up lines name the certificate's names, its expiry and a
	// directory URL that clients can use, not a placeholder.
	_, port, _ := net.SplitHostPort(m[1])
	out := r.stderr.String()
	for _, want := range []string{"ACME directory https://relay.internal.example:" + port + "/directory", "certificate " + filepath.Join(dir, "relay.crt") + " for relay.internal.example, expires "} {
		if !strings.Contains(out, want) {
			t.Errorf("the start-up lines lack %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "<Host>") || strings.Contains(out, "certificate for  ready") {
		t.Errorf("a start-up line has a placeholder or no names:\n%s", out)
	}
	if got := resp.TLS.PeerCertificates[0].Subject.CommonName; got != "relay.internal.example" {
		t.Errorf("served certificate %q, want the given one", got)
	}
	if fi, err := os.Stat(filepath.Join(dir, "up.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("upstream account key file: %v %v, want created 0600", err, fi)
	}
	// The tenants file was applied.
	if r := runCmd(t, map[string]string{"TLSMINT_RELAY_ADMIN_TOKEN": "0123456789abcdef-token"}, "relay", "tenant", "list", "--admin", r.admin).ok(t); !strings.Contains(r.stdout, "web.example.com") {
		t.Errorf("tenant list = %q, want the tenants file's", r.stdout)
	}
	// Its status page lists the given certificate with its expiry.
	code, body := get(t, r.admin+"/status?format=json")
	var st statuspage.Status
	if code != http.StatusOK || json.Unmarshal(body, &st) != nil {
		t.Fatalf("status: %d %s", code, body)
	}
	if len(st.Certificates) != 1 || st.Certificates[0].Name != "relay.internal.example" || st.Certificates[0].NotAfter.IsZero() {
		t.Errorf("status certificates = %+v, want relay.internal.example with its expiry", st.Certificates)
	}
	if code, body := get(t, r.admin+"/metrics"); code != http.StatusOK || !strings.Contains(string(body), "tlsmint_certificates{") ||
		!regexp.MustCompile(`tlsmint_certificate_not_after_timestamp_seconds\{issuer="[^"]*",name="relay.internal.example"\} [0-9.e+]+`).Match(body) {
		t.Errorf("metrics without the certificate file's expiry: %d %.2000s", code, body)
	}
}

// TestRelayReadTimeout: a client that sends its request body a byte at a
// time is cut off after read_timeout (one minute by default), instead of
// holding its connection and goroutine for as long as it likes.
func TestRelayReadTimeout(t *testing.T) {
	ca := newCA(t, testpebble.Options{})
	dir := t.TempDir()
	writeRelayCert(t, dir, "relay.internal.example")
	cfg := map[string]any{
		"storage":      "store",
		"listen":       "127.0.0.1:0",
		"tls":          map[string]any{"cert_file": "relay.crt", "key_file": "relay.key"},
		"admin":        map[string]any{"listen": "127.0.0.1:0", "token_env": "TOKEN"},
		"upstreams":    []any{map[string]any{"directory": ca.DirectoryURL(), "ca_roots": ca.rootsFile, "accept_tos": true}},
		"read_timeout": "1s",
	}
	file := filepath.Join(dir, "relay.json")
	writeJSON(t, file, cfg)
	r := startRelay(t, file, map[string]string{"TOKEN": "0123456789abcdef-token"})
	m := regexp.MustCompile(`listening on (\S+)`).FindStringSubmatch(r.stderr.String())
	if m == nil {
		t.Fatalf("no listening line:\n%s", r.stderr.String())
	}
	conn, err := tls.Dial("tcp", m[1], &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /new-order HTTP/1.1\r\nHost: %s\r\nContent-Type: application/jose+json\r\nContent-Length: 1000\r\n\r\n{", m[1])
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				if _, err := conn.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	start := time.Now()
	_, err = io.Copy(io.Discard, conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the relay still reads the trickled body after %v", time.Since(start))
	}
}

// TestRelayListenTakenAppliesNothing: a relay whose address is taken
// exits before it applies its tenants file: nothing is half-started, and
// the storage has no tenant.
func TestRelayListenTakenAppliesNothing(t *testing.T) {
	ca := newCA(t, testpebble.Options{})
	dir := t.TempDir()
	writeRelayCert(t, dir, "relay.internal.example")
	os.WriteFile(filepath.Join(dir, "tenants.json"), []byte(`[{"id": "web", "policy": {"names": ["web.example.com"]}}]`), 0o600)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	file := filepath.Join(dir, "relay.json")
	writeJSON(t, file, map[string]any{
		"storage":      "store",
		"listen":       "127.0.0.1:0",
		"tls":          map[string]any{"cert_file": "relay.crt", "key_file": "relay.key"},
		"admin":        map[string]any{"listen": taken.Addr().String(), "token_env": "TOKEN"},
		"upstreams":    []any{map[string]any{"directory": ca.DirectoryURL(), "ca_roots": ca.rootsFile, "accept_tos": true}},
		"tenants_file": "tenants.json",
	})
	env := map[string]string{"TOKEN": "0123456789abcdef-token"}
	runCmd(t, env, "relay", "--config", file).fails(t, exitFailure, taken.Addr().String(), "another server listens there")
	var ts []any
	runCmd(t, env, "relay", "tenant", "list", "--config", file, "--json").ok(t).decode(t, &ts)
	if len(ts) != 0 {
		t.Errorf("tenants after a failed start: %v, want none", ts)
	}
}

// TestRelayRetentionConfig: retention's durations reach the config.
func TestRelayRetentionConfig(t *testing.T) {
	c := validConfig()
	c["retention"] = map[string]any{"orders": "48h", "certificates": "720h", "sweep_interval": "15m"}
	b, _ := json.Marshal(c)
	cfg, err := parseRelayConfig(b, "/etc")
	if err != nil || time.Duration(cfg.Retention.Orders) != 48*time.Hour || time.Duration(cfg.Retention.Certificates) != 720*time.Hour || time.Duration(cfg.Retention.SweepInterval) != 15*time.Minute {
		t.Fatalf("retention: %+v, %v", cfg.Retention, err)
	}
	c["retention"] = map[string]any{"orders": "forever"}
	b, _ = json.Marshal(c)
	if _, err := parseRelayConfig(b, "/etc"); err == nil {
		t.Fatal("a bad retention was accepted")
	}
}

// TestRelayAdminListenAllowed: plain HTTP on loopback, TLS anywhere, and
// plain HTTP off loopback with allow_plain_http are accepted.
func TestRelayAdminListenAllowed(t *testing.T) {
	for _, admin := range []map[string]any{
		{"token_env": "T", "listen": "127.0.0.1:8081"},
		{"token_env": "T", "listen": "localhost:8081"},
		{"token_env": "T", "listen": "[::1]:8081"},
		{"token_env": "T", "listen": "0.0.0.0:8081", "tls": true},
		{"token_env": "T", "listen": ":8081", "allow_plain_http": true},
	} {
		c := validConfig()
		c["admin"] = admin
		b, _ := json.Marshal(c)
		if _, err := parseRelayConfig(b, "/etc"); err != nil {
			t.Errorf("admin %v: %v", admin, err)
		}
	}
}
