package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tlsmint/tlsmint/audit"
	"github.com/tlsmint/tlsmint/relay"
)

// maxAdminResponse bounds an answer of the admin API.
const maxAdminResponse = 4 << 20

// adminFlags choose how the tenant and eab commands reach the relay: its
// admin API, or the storage of --config (or --storage) directly.
type adminFlags struct {
	config    *string
	admin     string
	tokenFile string
}

func (f *adminFlags) add(cmd *cobra.Command) {
	fl := cmd.PersistentFlags()
	fl.StringVar(&f.admin, "admin", "", "a running relay's admin API, such as http://127.0.0.1:8081 (env TLSMINT_RELAY_ADMIN); default: the storage of --config directly")
	fl.StringVar(&f.tokenFile, "admin-token-file", "", "with --admin: file holding the admin token (env TLSMINT_RELAY_ADMIN_TOKEN_FILE, or the token itself in TLSMINT_RELAY_ADMIN_TOKEN)")
}

// adminError is an answer of the admin API other than the one wanted.
type adminError struct {
	status int
	msg    string
}

func (e *adminError) Error() string {
	switch e.status {
	case http.StatusUnauthorized:
		return "the admin API refused the token (HTTP 401): check TLSMINT_RELAY_ADMIN_TOKEN or --admin-token-file"
	case http.StatusForbidden:
		return "the admin API refused this address (HTTP 403): see admin.sources in the relay's configuration"
	case http.StatusBadRequest:
		return e.msg
	}
	return fmt.Sprintf("the admin API answered HTTP %d: %s", e.status, e.msg)
}

// adminClient speaks the relay's admin API, over the network or to a
// handler in this process.
type adminClient struct {
	base  string
	token string
	http  *http.Client
	close func()
}

// inProcess is a RoundTripper that answers from a handler in this
// process.
type inProcess struct{ h http.Handler }

func (p inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	p.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// adminClient returns the client the flags choose; the caller calls its
// close.
func (a *app) adminClient(ctx context.Context, f *adminFlags) (*adminClient, error) {
	if f.admin != "" {
		u, err := url.Parse(f.admin)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
			return nil, usagef("--admin %q: want the admin listener's URL, such as http://127.0.0.1:8081", f.admin)
		}
		var token string
		if f.tokenFile != "" {
			token, err = a.secret(f.tokenFile, "", "admin token")
		} else {
			token, err = a.secret("", "TLSMINT_RELAY_ADMIN_TOKEN", "admin token")
		}
		if err != nil {
			return nil, err
		}
		hc := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		return &adminClient{base: strings.TrimSuffix(f.admin, "/"), token: token, http: hc, close: func() {}}, nil
	}
	var storageURL string
	switch {
	case *f.config != "":
		cfg, err := loadRelayConfig(*f.config)
		if err != nil {
			return nil, err
		}
		storageURL = cfg.Storage
	case a.storageURL != "":
		storageURL = a.storageURL
	default:
		return nil, usagef("no relay to talk to: pass --config FILE (its storage), --storage S, or --admin URL")
	}
	store, closeStore, err := openRelayStorage(ctx, storageURL)
	if err != nil {
		return nil, err
	}
	trail := &audit.Log{Storage: store, Node: "tlsmint-cli"}
	token := rand.Text()
	// Only the admin API: the relay that serves the storage sweeps it, by
	// its own retention.
	srv := &relay.Server{Storage: store, AdminToken: token, AuditLog: trail, Retention: relay.Retention{SweepInterval: -1}}
	return &adminClient{
		base: "http://in-process", token: token,
		http: &http.Client{Transport: inProcess{srv.AdminHandler()}},
		close: func() {
			srv.Close()
			trail.Close()
			closeStore()
		},
	}, nil
}

// adminCall makes one request of the relay the flags choose (see
// adminClient and adminClient.do) and closes the client.
func (a *app) adminCall(ctx context.Context, f *adminFlags, method, path string, body any, want int, out any) error {
	c, err := a.adminClient(ctx, f)
	if err != nil {
		return err
	}
	defer c.close()
	return c.do(ctx, method, path, body, want, out)
}

// do sends a request and decodes the JSON answer into out (when not nil).
// want is the status of success; 404 is errNotFound.
func (c *adminClient) do(ctx context.Context, method, path string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the relay's admin API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminResponse))
	if err != nil {
		return fmt.Errorf("reading the admin API's answer: %w", err)
	}
	if resp.StatusCode != want {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		ae := &adminError{status: resp.StatusCode, msg: clip(msg, 500)}
		if resp.StatusCode == http.StatusBadRequest {
			return &exitError{code: exitUsage, err: ae}
		}
		return ae
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("the admin API's answer is not what was expected: %w", err)
		}
	}
	return nil
}

func (a *app) relayTenantCommand(config *string) *cobra.Command {
	f := &adminFlags{config: config}
	cmd := &cobra.Command{
		Use:   "tenant",
		Short: "Add, list or remove the relay's tenants",
		Long: `A tenant is a team whose ACME clients register with one of its EAB keys; its
policy says what they may order. These commands use a running relay's admin
API with --admin URL, or the storage of --config directly (the relay picks the
change up at once: its state is in the storage).`,
		Example: `  tlsmint relay tenant add web --config relay.json --name web.example.com
  tlsmint relay tenant list --admin http://127.0.0.1:8081
  tlsmint relay tenant remove web --config relay.json --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	f.add(cmd)
	cmd.AddCommand(a.tenantAddCommand(f), a.tenantListCommand(f), a.tenantRemoveCommand(f))
	return cmd
}

func (a *app) tenantAddCommand(f *adminFlags) *cobra.Command {
	var (
		policyFile                     string
		names, preAuth, profiles, keys []string
		ips, preAuthIPs, sources       []string
		targets                        []string
		clientNames                    []string
		wildcards, replace             bool
		maxNames                       int
		rateLimit, accountRate         string
		failLimit, tenantFailLimit     string
	)
	cmd := &cobra.Command{
		Use:   "add ID",
		Short: "Create a tenant with its policy",
		Long: `add creates a tenant with the policy given by flags, or as JSON (docs/relay.md)
in --policy FILE ("-" for stdin). An existing tenant is refused unless
--replace, which replaces its policy (its EAB keys and accounts stay).`,
		Example: `  tlsmint relay tenant add web --config relay.json --name web.example.com --ip 10.1.0.0/16
  tlsmint relay tenant add intranet --config relay.json --name corp.example --validation-target 10.20.0.0/16
  tlsmint relay tenant add ci --admin http://127.0.0.1:8081 --policy ci-policy.json --replace`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var pol relay.Policy
			byFlags := len(names)+len(preAuth)+len(profiles)+len(keys)+len(ips)+len(preAuthIPs)+len(sources)+len(clientNames)+len(targets) > 0 || wildcards || maxNames != 0 || rateLimit != "" || accountRate != "" || failLimit != "" || tenantFailLimit != ""
			switch {
			case policyFile != "" && byFlags:
				return usagef("--policy and policy flags (--name, --ip, …) do not go together")
			case policyFile != "":
				var b []byte
				var err error
				if policyFile == "-" {
					b, err = io.ReadAll(io.LimitReader(a.stdin, maxConfigSize+1))
				} else {
					b, err = readSmallFile(policyFile)
				}
				if err != nil {
					return fmt.Errorf("reading --policy: %w", err)
				}
				if err := decodeStrict(b, &pol); err != nil {
					return usagef("--policy %s: %v", policyFile, err)
				}
			case !byFlags:
				return usagef("no policy: pass --name, --ip (and the other policy flags) or --policy FILE")
			default:
				var err error
				pol = relay.Policy{Names: names, PreAuthorized: preAuth, Profiles: profiles, KeyTypes: keys, Wildcards: wildcards, MaxNames: maxNames, ClientNames: clientNames}
				if pol.IPRanges, err = prefixes("--ip", ips); err != nil {
					return err
				}
				if pol.PreAuthorizedIPs, err = prefixes("--pre-authorized-ip", preAuthIPs); err != nil {
					return err
				}
				if pol.Sources, err = prefixes("--source", sources); err != nil {
					return err
				}
				if pol.ValidationTargets, err = prefixes("--validation-target", targets); err != nil {
					return err
				}
				for _, l := range []struct {
					flag, val string
					to        *relay.RateLimit
				}{
					{"--rate-limit", rateLimit, &pol.RateLimit}, {"--account-rate-limit", accountRate, &pol.AccountRateLimit},
					{"--failed-validation-limit", failLimit, &pol.FailedValidationLimit}, {"--tenant-failed-validation-limit", tenantFailLimit, &pol.TenantFailedValidationLimit},
				} {
					if l.val == "" {
						continue
					}
					if *l.to, err = parseRate(l.flag, l.val); err != nil {
						return err
					}
				}
			}
			ctx := cmd.Context()
			c, err := a.adminClient(ctx, f)
			if err != nil {
				return err
			}
			defer c.close()
			id := args[0]
			if !replace {
				err := c.do(ctx, http.MethodGet, "/tenants/"+url.PathEscape(id), nil, http.StatusOK, nil)
				if err == nil {
					return usagef("tenant %s exists: pass --replace to replace its policy", id)
				}
				if ae := (*adminError)(nil); !errors.As(err, &ae) || ae.status != http.StatusNotFound {
					return err
				}
			}
			var t relay.Tenant
			if err := c.do(ctx, http.MethodPut, "/tenants/"+url.PathEscape(id), pol, http.StatusOK, &t); err != nil {
				return err
			}
			return a.printTenants([]relay.Tenant{t})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&policyFile, "policy", "", `the policy as JSON, such as {"names": ["example.com"]} ("-" for stdin)`)
	fl.StringSliceVar(&names, "name", nil, "a DNS name allowed, with every name below it (repeatable)")
	fl.StringSliceVar(&ips, "ip", nil, "an IP range allowed, such as 10.0.0.0/8 (repeatable)")
	fl.BoolVar(&wildcards, "wildcards", false, "allow wildcard names under the allowed names")
	fl.StringSliceVar(&preAuth, "pre-authorized", nil, "a DNS name (and every name below it) valid without validation (repeatable)")
	fl.StringSliceVar(&preAuthIPs, "pre-authorized-ip", nil, "an IP range valid without validation (repeatable)")
	fl.IntVar(&maxNames, "max-names", 0, "most identifiers per order (default 100)")
	fl.StringSliceVar(&profiles, "profile", nil, "a profile allowed (repeatable; default every profile the relay offers)")
	fl.StringSliceVar(&keys, "key-type", nil, "a certificate key type allowed: P-256, P-384, RSA2048, RSA3072, RSA4096 (repeatable; default all)")
	fl.StringVar(&rateLimit, "rate-limit", "", "new orders of all the tenant's accounts per period, such as 100/1h, or none (default 1000/1h)")
	fl.StringVar(&accountRate, "account-rate-limit", "", "new orders of each account per period, or none (default 300/3h)")
	fl.StringVar(&failLimit, "failed-validation-limit", "", "failed validations of each account per period, or none (default 30/1h)")
	fl.StringVar(&tenantFailLimit, "tenant-failed-validation-limit", "", "failed validations of all the tenant's accounts per period, or none (default 300/1h)")
	fl.StringSliceVar(&targets, "validation-target", nil, "a reserved address range (loopback, private, link-local, …) the relay's validator may connect to for this tenant's challenges, such as 10.20.0.0/16 (repeatable; default none: validations reach public addresses only)")
	fl.StringSliceVar(&sources, "source", nil, "a client address range the tenant's accounts may use (repeatable; default any)")
	fl.StringArrayVar(&clientNames, "client-name", nil, "a client certificate name (CN, DNS, email or URI SAN) the tenant's accounts must present one of (repeatable; needs client_auth; default none needed)")
	fl.BoolVar(&replace, "replace", false, "replace the policy of an existing tenant")
	// TLSMINT_KEY_TYPE and TLSMINT_PROFILE are obtain's and renew's: a
	// tenant's policy takes only what the command line says.
	noEnv(fl, "profile", "key-type")
	return cmd
}

// prefixes parses address ranges; a bare address is a /32 or /128.
func prefixes(flag string, ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, usagef("%s %q: want an address range such as 10.0.0.0/8", flag, s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// parseRate parses the value of a limit flag: N/period, or "none".
func parseRate(flag, s string) (relay.RateLimit, error) {
	if s == "none" {
		return relay.RateLimit{Orders: -1}, nil
	}
	n, per, ok := strings.Cut(s, "/")
	orders, err := strconv.Atoi(n)
	if !ok || err != nil || orders <= 0 {
		return relay.RateLimit{}, usagef("%s %q: want count/period, such as 100/1h, or none", flag, s)
	}
	d, err := time.ParseDuration(per)
	if err != nil || d <= 0 {
		return relay.RateLimit{}, usagef("%s %q: want count/period, such as 100/1h, or none", flag, s)
	}
	return relay.RateLimit{Orders: orders, Period: d}, nil
}

// fmtRate shows a limit in the tenant list: "default", "none" or N/period.
func fmtRate(r relay.RateLimit) string {
	switch {
	case r.Orders < 0:
		return "none"
	case r.Orders == 0:
		return "default"
	}
	return fmt.Sprintf("%d/%s", r.Orders, r.Period)
}

func (a *app) tenantListCommand(f *adminFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List the tenants and their policies",
		Example: `  tlsmint relay tenant list --config relay.json --json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ts []relay.Tenant
			if err := a.adminCall(cmd.Context(), f, http.MethodGet, "/tenants", nil, http.StatusOK, &ts); err != nil {
				return err
			}
			return a.printTenants(ts)
		},
	}
}

func (a *app) tenantRemoveCommand(f *adminFlags) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a tenant and its EAB keys (its accounts are refused from then on)",
		Long: `remove deletes a tenant and its EAB keys. Its accounts are refused from then
on, so it asks for --yes.`,
		Example: `  tlsmint relay tenant remove web --config relay.json --yes`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return usagef("removing tenant %s refuses every account of it: pass --yes", args[0])
			}
			if err := a.adminCall(cmd.Context(), f, http.MethodDelete, "/tenants/"+url.PathEscape(args[0]), nil, http.StatusNoContent, nil); err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "tenant %s removed\n", args[0])
			return nil
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm the removal")
	return cmd
}

// printTenants prints tenants as a table, or as JSON.
func (a *app) printTenants(ts []relay.Tenant) error {
	if a.jsonOut {
		if ts == nil {
			ts = []relay.Tenant{}
		}
		return a.printJSON(ts)
	}
	w := a.table()
	fmt.Fprintln(w, "TENANT\tNAMES\tIP RANGES\tWILDCARDS\tPRE-AUTHORIZED\tVALIDATION TARGETS\tRATE LIMIT\tCREATED")
	for _, t := range ts {
		p := t.Policy
		var ips, pre, targets []string
		for _, r := range p.IPRanges {
			ips = append(ips, r.String())
		}
		pre = append(pre, p.PreAuthorized...)
		for _, r := range p.PreAuthorizedIPs {
			pre = append(pre, r.String())
		}
		for _, r := range p.ValidationTargets {
			targets = append(targets, r.String())
		}
		rate := fmtRate(p.RateLimit) + ", account " + fmtRate(p.AccountRateLimit)
		wild := "no"
		if p.Wildcards {
			wild = "yes"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, dash(strings.Join(p.Names, ",")), dash(strings.Join(ips, ",")), wild, dash(strings.Join(pre, ",")), dash(strings.Join(targets, ",")), rate, fmtTime(t.Created))
	}
	return w.Flush()
}

func (a *app) relayEABCommand(config *string) *cobra.Command {
	f := &adminFlags{config: config}
	cmd := &cobra.Command{
		Use:   "eab",
		Short: "Mint, list or remove a tenant's External Account Binding keys",
		Long: `An EAB key binds the ACME accounts registered with it to its tenant. mint
prints the key ID and the MAC key (base64url) once: the relay never shows the
MAC key again. Hand both to the team, which registers with them (certbot
--eab-kid --eab-hmac-key, lego --eab --kid --hmac, tlsmint account register
--eab-kid --eab-hmac-file).`,
		Example: `  tlsmint relay eab mint web --config relay.json
  tlsmint relay eab list web --admin http://127.0.0.1:8081
  tlsmint relay eab remove KEY-ID --config relay.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	f.add(cmd)
	mint := &cobra.Command{
		Use:     "mint TENANT",
		Short:   "Mint an EAB key for a tenant, shown once",
		Example: `  tlsmint relay eab mint web --config relay.json`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out struct {
				KeyID   string `json:"key_id"`
				HMACKey string `json:"hmac_key"`
			}
			if err := a.adminCall(cmd.Context(), f, http.MethodPost, "/tenants/"+url.PathEscape(args[0])+"/eab", nil, http.StatusCreated, &out); err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(out)
			}
			w := a.table()
			fmt.Fprintf(w, "key_id:\t%s\n", out.KeyID)
			fmt.Fprintf(w, "hmac_key:\t%s\n", out.HMACKey)
			fmt.Fprintln(a.stderr, "the MAC key is shown only now: hand it to the team over a safe channel")
			return w.Flush()
		},
	}
	list := &cobra.Command{
		Use:     "list TENANT",
		Short:   "List a tenant's EAB key IDs (never their MAC keys)",
		Example: `  tlsmint relay eab list web --config relay.json`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var keys []relay.EABKey
			if err := a.adminCall(cmd.Context(), f, http.MethodGet, "/tenants/"+url.PathEscape(args[0])+"/eab", nil, http.StatusOK, &keys); err != nil {
				return err
			}
			if a.jsonOut {
				if keys == nil {
					keys = []relay.EABKey{}
				}
				return a.printJSON(keys)
			}
			w := a.table()
			fmt.Fprintln(w, "KEY ID\tTENANT\tCREATED")
			for _, k := range keys {
				fmt.Fprintf(w, "%s\t%s\t%s\n", k.KeyID, k.Tenant, fmtTime(k.Created))
			}
			return w.Flush()
		},
	}
	remove := &cobra.Command{
		Use:     "remove KEY-ID",
		Short:   "Remove an EAB key: no new account can register with it (accounts registered with it stay)",
		Example: `  tlsmint relay eab remove 3v4k… --config relay.json`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.adminCall(cmd.Context(), f, http.MethodDelete, "/eab/"+url.PathEscape(args[0]), nil, http.StatusNoContent, nil); err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "EAB key %s removed\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(mint, list, remove)
	return cmd
}
