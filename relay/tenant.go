package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/tlsmint/tlsmint/acme"
)

// DefaultMaxNames is the most identifiers an order may have when
// Policy.MaxNames is zero (Let's Encrypt's limit).
const DefaultMaxNames = 100

// Key types a Policy may allow for certificate keys (the CSR's key).
const (
	KeyP256    = "P-256"
	KeyP384    = "P-384"
	KeyRSA2048 = "RSA2048"
	KeyRSA3072 = "RSA3072"
	KeyRSA4096 = "RSA4096"
)

// DefaultKeyTypes are the certificate key types allowed when
// Policy.KeyTypes is empty.
var DefaultKeyTypes = []string{KeyP256, KeyP384, KeyRSA2048, KeyRSA3072, KeyRSA4096}

// A Policy says what the accounts of a tenant may order. Its zero value
// allows nothing but lists what the defaults are.
type Policy struct {
	// Names are the DNS names allowed, each with every name below it:
	// "example.com" allows example.com and www.example.com. Empty allows
	// no DNS name.
	Names []string `json:"names,omitempty"`
	// IPRanges are the IP addresses allowed. Empty allows none.
	IPRanges []netip.Prefix `json:"ip_ranges,omitempty"`
	// Wildcards allows wildcard names ("*.example.com", under Names),
	// which need dns-01 (or pre-authorization).
	Wildcards bool `json:"wildcards,omitempty"`
	// PreAuthorized are DNS names (each with every name below it) and
	// PreAuthorizedIPs the addresses whose authorizations are valid
	// without a downstream validation: the administrator vouches that
	// this tenant controls them. They must also be allowed by Names and
	// IPRanges.
	PreAuthorized    []string       `json:"pre_authorized,omitempty"`
	PreAuthorizedIPs []netip.Prefix `json:"pre_authorized_ips,omitempty"`
	// MaxNames is the most identifiers one order may have. Zero means
	// DefaultMaxNames.
	MaxNames int `json:"max_names,omitempty"`
	// Profiles are the profiles (of Server.Profiles) this tenant may
	// order. Empty allows every profile the relay offers.
	Profiles []string `json:"profiles,omitempty"`
	// KeyTypes are the certificate key types allowed (KeyP256, …). Empty
	// means DefaultKeyTypes.
	KeyTypes []string `json:"key_types,omitempty"`
	// RateLimit bounds the new orders of all the tenant's accounts
	// together. Zero means DefaultTenantOrders per
	// DefaultTenantOrdersPeriod; Orders -1 means no limit.
	RateLimit RateLimit `json:"rate_limit,omitzero"`
	// AccountRateLimit bounds each account's new orders. Zero means
	// DefaultAccountOrders per DefaultAccountOrdersPeriod; Orders -1
	// means no limit.
	AccountRateLimit RateLimit `json:"account_rate_limit,omitzero"`
	// FailedValidationLimit bounds each account's failed validations
	// (Orders counts them): past it, the account's challenges are
	// refused with rateLimited, without a connection, until the period
	// has room again. Zero means DefaultAccountFailedValidations per
	// DefaultFailedValidationsPeriod; Orders -1 means no limit.
	FailedValidationLimit RateLimit `json:"failed_validation_limit,omitzero"`
	// TenantFailedValidationLimit is FailedValidationLimit for all the
	// tenant's accounts together. Zero means
	// DefaultTenantFailedValidations per DefaultFailedValidationsPeriod;
	// Orders -1 means no limit.
	TenantFailedValidationLimit RateLimit `json:"tenant_failed_validation_limit,omitzero"`
	// ValidationTargets are reserved address ranges (loopback, private,
	// link-local, …; see Validator) that the validator may connect to for
	// this tenant's challenges, such as "10.20.0.0/16" for a relay that
	// validates names inside the organisation's network. Public addresses
	// need no entry. Empty means the validator connects to no reserved
	// address for this tenant: a name that resolves only to reserved
	// addresses fails its http-01 and tls-alpn-01 validations with a
	// connection problem naming the address.
	ValidationTargets []netip.Prefix `json:"validation_targets,omitempty"`
	// Sources, if not empty, are the only client addresses the tenant's
	// accounts may use.
	Sources []netip.Prefix `json:"sources,omitempty"`
	// ClientNames, if not empty, bind the tenant's accounts to client
	// certificates (mTLS): every request of one of them, its registration
	// included, must come with a client certificate that the TLS server
	// verified (see Server.RequireClientCert for the tls.Config) and that
	// names one of these, as its subject's common name or one of its DNS
	// names (both case-insensitively), email addresses or URIs (exactly).
	// Others are refused with unauthorized. Empty means no client
	// certificate is needed (unless Server.RequireClientCert).
	ClientNames []string `json:"client_names,omitempty"`
}

// A RateLimit allows Orders events (new orders, or for the failed
// validation limits, failed validations) in any Period; Orders -1 (with
// no Period) is no limit, and the zero RateLimit is the default of the
// field it is in. In JSON, Period is a Go duration string ("1h"). The
// count is kept in buckets of a sixtieth of Period: an event is counted
// for up to Period plus a bucket, never less than Period.
type RateLimit struct {
	Orders int
	Period time.Duration
}

// MarshalJSON encodes {"orders": N, "period": "1h0m0s"}.
func (r RateLimit) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Orders int    `json:"orders"`
		Period string `json:"period"`
	}{r.Orders, r.Period.String()})
}

// UnmarshalJSON decodes {"orders": N, "period": "1h"}.
func (r *RateLimit) UnmarshalJSON(b []byte) error {
	var w struct {
		Orders int    `json:"orders"`
		Period string `json:"period"`
	}
	// Strict as the admin API and the command's configuration are: a
	// misspelt field must not leave a tenant without its limit.
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return fmt.Errorf("relay: rate limit: %w", err)
	}
	d, err := time.ParseDuration(w.Period)
	if err != nil && w.Period != "" {
		return fmt.Errorf("relay: rate limit period: %w", err)
	}
	*r = RateLimit{Orders: w.Orders, Period: d}
	return nil
}

// check reports what is wrong with a limit, or nil.
func (r RateLimit) check() error {
	switch {
	case r.Orders == -1 && r.Period >= 0, r.Orders == 0 && r.Period == 0:
		return nil
	case r.Orders > 0 && r.Period > 0:
		return nil
	}
	return errors.New("a rate limit needs a positive count and a positive period (or a count of -1 for no limit)")
}

// check reports what is wrong with a policy, or nil.
func (p *Policy) check() error {
	for _, n := range append(slices.Clone(p.Names), p.PreAuthorized...) {
		if _, prob := normalizeDNS(n, false); prob != nil {
			return fmt.Errorf("relay: policy name %q: %s", clip(n, 64), prob.Detail)
		}
	}
	for _, kt := range p.KeyTypes {
		if !slices.Contains(DefaultKeyTypes, kt) {
			return fmt.Errorf("relay: unknown key type %q (known: %s)", clip(kt, 32), strings.Join(DefaultKeyTypes, ", "))
		}
	}
	if err := checkClientNames(p.ClientNames); err != nil {
		return err
	}
	if p.MaxNames < 0 {
		return errors.New("relay: negative MaxNames")
	}
	for _, rl := range []struct {
		name string
		lim  RateLimit
	}{{"rate_limit", p.RateLimit}, {"account_rate_limit", p.AccountRateLimit}, {"failed_validation_limit", p.FailedValidationLimit}, {"tenant_failed_validation_limit", p.TenantFailedValidationLimit}} {
		if err := rl.lim.check(); err != nil {
			return fmt.Errorf("relay: %s: %w", rl.name, err)
		}
	}
	return nil
}

func (p *Policy) maxNames() int {
	if p.MaxNames > 0 {
		return p.MaxNames
	}
	return DefaultMaxNames
}

func (p *Policy) keyTypes() []string {
	if len(p.KeyTypes) > 0 {
		return p.KeyTypes
	}
	return DefaultKeyTypes
}

// under reports whether name is one of suffixes or below one.
func under(name string, suffixes []string) bool {
	for _, s := range suffixes {
		s = strings.ToLower(strings.TrimSuffix(s, "."))
		if name == s || strings.HasSuffix(name, "."+s) {
			return true
		}
	}
	return false
}

func inRanges(a netip.Addr, ranges []netip.Prefix) bool {
	for _, p := range ranges {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// allows checks an identifier (normalised, wildcards with "*.") against
// the policy and returns the reason it is refused, or "".
func (p *Policy) allows(id acme.Identifier) string {
	switch id.Type {
	case acme.IdentifierDNS:
		base, wild := strings.CutPrefix(id.Value, "*.")
		if wild && !p.Wildcards {
			return "wildcard names are not allowed for this account"
		}
		if !under(base, p.Names) {
			return "this name is not allowed for this account"
		}
	case acme.IdentifierIP:
		a, err := netip.ParseAddr(id.Value)
		if err != nil || !inRanges(a, p.IPRanges) {
			return "this address is not allowed for this account"
		}
	default:
		return "unsupported identifier type"
	}
	return ""
}

// preAuthorized reports whether the policy vouches for the identifier.
func (p *Policy) preAuthorized(id acme.Identifier) bool {
	switch id.Type {
	case acme.IdentifierDNS:
		return under(strings.TrimPrefix(id.Value, "*."), p.PreAuthorized)
	case acme.IdentifierIP:
		a, err := netip.ParseAddr(id.Value)
		return err == nil && inRanges(a, p.PreAuthorizedIPs)
	}
	return false
}

// A Tenant is a group of downstream accounts sharing a policy, such as a
// team or an application. Accounts join a tenant by registering with one
// of its EAB keys.
type Tenant struct {
	// ID names the tenant: 1 to 64 of a-z, 0-9, '-', '_' and '.'.
	ID string `json:"id"`
	// Policy says what its accounts may order.
	Policy Policy `json:"policy"`
	// Created is when the tenant was first stored.
	Created time.Time `json:"created,omitzero"`
}

// ErrInvalidTenant is returned (wrapped) for a tenant whose ID or policy
// is not valid.
var ErrInvalidTenant = errors.New("relay: invalid tenant")

// ErrNoTenant is returned (wrapped) for a tenant that does not exist.
var ErrNoTenant = errors.New("relay: no such tenant")

func validTenantID(id string) bool {
	if id == "" || len(id) > 64 || id == "." || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// loadTenant returns a stored tenant.
func (s *Server) loadTenant(ctx context.Context, id string) (*Tenant, error) {
	if !validTenantID(id) {
		return nil, fmt.Errorf("%w %q", ErrNoTenant, clip(id, 64))
	}
	t := new(Tenant)
	if err := s.load(ctx, keyTenants+id, t); err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("%w %q", ErrNoTenant, id)
		}
		return nil, err
	}
	return t, nil
}

// accountPolicy returns the policy of an account's tenant (see policy),
// refusing an account whose tenant was deleted, even when a tenant of the
// same ID was created since.
func (c *call) accountPolicy(a *accountRecord) (*Policy, *acme.Problem) {
	return c.tenantPolicy(a.Tenant, a.TenantCreated)
}

// policyOf is accountPolicy that answers the problem itself and returns
// nil then.
func (c *call) policyOf(a *accountRecord) *Policy {
	pol, p := c.accountPolicy(a)
	if p != nil {
		c.fail(p)
		return nil
	}
	return pol
}

// policy returns the policy of a tenant ("" for anonymous accounts) and
// checks the request's source address against it.
func (c *call) policy(tenant string) (*Policy, *acme.Problem) {
	return c.tenantPolicy(tenant, time.Time{})
}

// tenantPolicy is policy, and when created is not zero, the tenant must
// be the one created then. It records the tenant's Created in
// c.tenantCreated.
func (c *call) tenantPolicy(tenant string, created time.Time) (*Policy, *acme.Problem) {
	var p *Policy
	if tenant == "" {
		if c.s.Anonymous == nil {
			return nil, unauthorized("accounts without External Account Binding are not allowed")
		}
		p = c.s.Anonymous
	} else {
		t, err := c.s.loadTenant(c.ctx, tenant)
		if errors.Is(err, ErrNoTenant) {
			return nil, unauthorized("the account's tenant no longer exists")
		}
		if err != nil {
			return nil, c.storageFailed(err)
		}
		if !created.IsZero() && !t.Created.Equal(created) {
			return nil, unauthorized("the account's tenant no longer exists (a tenant of the same ID was created since)")
		}
		p = &t.Policy
		c.tenantCreated = t.Created
	}
	c.tenant = tenant
	c.pol = p
	if !allowedSource(c.r, p.Sources) {
		return nil, unauthorized("requests from this address are not allowed for this account")
	}
	if prob := p.checkClientCert(c.r, tenantLabel(tenant)); prob != nil {
		return nil, prob
	}
	return p, nil
}

// An eabRecord is an External Account Binding key of a tenant. MAC is
// secret: it is never logged or returned after it was minted.
type eabRecord struct {
	KeyID   string    `json:"key_id"`
	Tenant  string    `json:"tenant"`
	MAC     []byte    `json:"mac"`
	Created time.Time `json:"created"`
}

// eabAlgorithms are the MAC algorithms accepted for EAB (RFC 8555,
// section 7.3.4).
var eabAlgorithms = []jose.SignatureAlgorithm{jose.HS256, jose.HS384, jose.HS512}

// checkEAB verifies a newAccount's externalAccountBinding for the
// account key and returns the tenant and EAB key ID it binds to.
func (c *call) checkEAB(raw json.RawMessage, accountKey *jose.JSONWebKey) (tenant, kid string, _ *acme.Problem) {
	jws, hdr, p := parseJWS(raw, eabAlgorithms)
	if p != nil {
		if p.Type == problemNS+probBadSignatureAlgorithm {
			return "", "", malformed("externalAccountBinding: the MAC algorithm must be HS256, HS384 or HS512")
		}
		p.Detail = "externalAccountBinding: " + p.Detail
		return "", "", p
	}
	h := jws.Signatures[0].Protected
	if _, ok := hdr["nonce"]; ok {
		return "", "", malformed(`externalAccountBinding: the JWS must not have a "nonce"`)
	}
	if _, ok := hdr["jwk"]; ok {
		return "", "", malformed(`externalAccountBinding: the JWS must not have a "jwk"`)
	}
	if u, _ := h.ExtraHeaders["url"].(string); u != c.url(pathNewAccount) {
		return "", "", malformed(`externalAccountBinding: "url" must be the newAccount URL`)
	}
	if !validID(h.KeyID) {
		return "", "", unauthorized("externalAccountBinding: unknown EAB key")
	}
	rec := new(eabRecord)
	if err := c.s.load(c.ctx, keyEAB+h.KeyID, rec); err != nil {
		if isNotFound(err) {
			return "", "", unauthorized("externalAccountBinding: unknown EAB key")
		}
		return "", "", c.storageFailed(err)
	}
	c.tenant = rec.Tenant
	payload, err := jws.Verify(rec.MAC)
	if err != nil {
		return "", "", unauthorized("externalAccountBinding: the MAC does not verify")
	}
	var bound jose.JSONWebKey
	if err := bound.UnmarshalJSON(payload); err != nil || !bound.IsPublic() {
		return "", "", malformed("externalAccountBinding: the payload is not a public JWK")
	}
	got, p1 := thumbprint(&bound)
	want, p2 := thumbprint(accountKey)
	if p1 != nil || p2 != nil || got != want {
		return "", "", malformed("externalAccountBinding: the bound key is not the account's key")
	}
	return rec.Tenant, rec.KeyID, nil
}

// tenantLabel names a tenant in a problem's detail.
func tenantLabel(id string) string {
	if id == "" {
		return "(accounts without EAB)"
	}
	return id
}
