package acme

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// Account status values.
const (
	StatusValid       = "valid"
	StatusDeactivated = "deactivated"
	StatusRevoked     = "revoked"
)

// An Account is an ACME account object (RFC 8555, section 7.1.2).
type Account struct {
	// URL is the account's URL, used as "kid" in requests.
	URL string `json:"-"`
	// Status is "valid", "deactivated" or "revoked".
	Status string `json:"status,omitempty"`
	// Contact lists contact URLs such as "mailto:ops@example.com".
	Contact []string `json:"contact,omitempty"`
	// TermsOfServiceAgreed must be true on registration where the server
	// has terms of service.
	TermsOfServiceAgreed bool `json:"termsOfServiceAgreed,omitempty"`
	// Orders is the URL of the account's orders list.
	Orders string `json:"orders,omitempty"`
	// ExternalAccountBinding binds a new account to an account the CA
	// already knows (RFC 8555, section 7.3.4). Only read by Register.
	ExternalAccountBinding *ExternalAccountBinding `json:"-"`
}

// ExternalAccountBinding holds the key identifier and MAC key that a CA such
// as ZeroSSL or Google Trust Services hands out for External Account Binding.
type ExternalAccountBinding struct {
	// KeyID is the key identifier given by the CA.
	KeyID string
	// HMACKey is the MAC key, decoded from the base64url form the CA gives
	// (see [DecodeEABKey]).
	HMACKey []byte
}

// String returns the key ID with the MAC key redacted.
func (e ExternalAccountBinding) String() string {
	return "EAB(" + e.KeyID + ", key redacted)"
}

// GoString is String, so that %#v does not print the MAC key either.
func (e ExternalAccountBinding) GoString() string { return e.String() }

// Format prints String for every verb (%v, %+v, %#v, %s, %x, …): the MAC
// key never reaches a formatted string, whether e is a value or a pointer.
func (e ExternalAccountBinding) Format(f fmt.State, _ rune) { io.WriteString(f, e.String()) }

// LogValue implements [slog.LogValuer]: the key ID, never the MAC key.
func (e ExternalAccountBinding) LogValue() slog.Value {
	return slog.GroupValue(slog.String("key_id", e.KeyID), slog.String("mac_key", "redacted"))
}

// MarshalJSON encodes the key ID only; the MAC key is written as
// "redacted", so that configuration dumps and JSON logs do not leak it.
func (e ExternalAccountBinding) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		KeyID   string `json:"key_id"`
		HMACKey string `json:"mac_key"`
	}{e.KeyID, "redacted"})
}

// DecodeEABKey decodes a base64url MAC key as CAs hand them out, with or
// without padding.
func DecodeEABKey(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("acme: EAB MAC key is not base64url")
	}
	return b, nil
}

type accountRequest struct {
	Contact                []string        `json:"contact,omitempty"`
	TermsOfServiceAgreed   bool            `json:"termsOfServiceAgreed,omitempty"`
	OnlyReturnExisting     bool            `json:"onlyReturnExisting,omitempty"`
	ExternalAccountBinding json.RawMessage `json:"externalAccountBinding,omitempty"`
}

// ErrTermsNotAgreed is returned (wrapped, with the terms' URL) by
// [Client.Register] when the CA has terms of service and
// Account.TermsOfServiceAgreed is false. No request is made: agreeing is
// the account holder's decision, never the library's.
var ErrTermsNotAgreed = errors.New("acme: the CA's terms of service have not been agreed to")

// Register creates an account for the client's key, or returns the existing
// one if the key is already registered. On success the client uses the
// account's URL for all later requests.
//
// If the directory names terms of service (meta.termsOfService) and
// acct.TermsOfServiceAgreed is false, Register fails with
// [ErrTermsNotAgreed], naming the terms' URL, before sending anything.
//
// If the directory says externalAccountRequired and acct has no
// ExternalAccountBinding, Register fails with [ErrExternalAccountRequired]
// before sending anything.
func (c *Client) Register(ctx context.Context, acct Account) (*Account, error) {
	key := c.accountKey()
	if _, err := signingAlg(key); err != nil {
		return nil, err
	}
	dir, err := c.Directory(ctx)
	if err != nil {
		return nil, err
	}
	if tos := dir.Meta.TermsOfService; tos != "" && !acct.TermsOfServiceAgreed {
		return nil, fmt.Errorf("%w: read %s and set Account.TermsOfServiceAgreed", ErrTermsNotAgreed, clipString(tos, 512))
	}
	req := accountRequest{Contact: acct.Contact, TermsOfServiceAgreed: acct.TermsOfServiceAgreed}
	if eab := acct.ExternalAccountBinding; eab != nil {
		raw, err := eabJWS(key, eab, dir.NewAccount)
		if err != nil {
			return nil, err
		}
		req.ExternalAccountBinding = raw
	} else if dir.Meta.ExternalAccountRequired {
		p := *ErrExternalAccountRequired
		p.Detail = "the CA requires External Account Binding; set Account.ExternalAccountBinding"
		return nil, &p
	}
	return c.postAccount(ctx, dir.NewAccount, req)
}

// LookupAccount returns the account registered for the client's key without
// creating one (onlyReturnExisting). When there is none, the error matches
// [ErrAccountDoesNotExist].
func (c *Client) LookupAccount(ctx context.Context) (*Account, error) {
	if _, err := signingAlg(c.accountKey()); err != nil {
		return nil, err
	}
	dir, err := c.Directory(ctx)
	if err != nil {
		return nil, err
	}
	return c.postAccount(ctx, dir.NewAccount, accountRequest{OnlyReturnExisting: true})
}

func (c *Client) postAccount(ctx context.Context, url string, req accountRequest) (*Account, error) {
	resp, err := c.post(ctx, signer{useJWK: true, op: OpNewAccount}, url, req, "", maxJSONBody)
	if err != nil {
		return nil, fmt.Errorf("acme: account: %w", err)
	}
	a := new(Account)
	if err := decodeJSON(resp, a, "account"); err != nil {
		return nil, err
	}
	if resp.location == "" {
		return nil, malformed("account", nil, "the response has no Location")
	}
	a.URL = resp.location
	c.setAccountID(a.URL)
	return a, nil
}

// eabJWS builds the externalAccountBinding JWS: the account's public JWK,
// MACed with the EAB key (HS256), for the newAccount URL.
func eabJWS(accountKey crypto.Signer, eab *ExternalAccountBinding, url string) ([]byte, error) {
	if eab.KeyID == "" || len(eab.HMACKey) == 0 {
		return nil, fmt.Errorf("acme: ExternalAccountBinding needs KeyID and HMACKey")
	}
	jwk, err := publicJWK(accountKey)
	if err != nil {
		return nil, err
	}
	payload, err := jwk.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("acme: encoding account JWK: %w", err)
	}
	opts := (&jose.SignerOptions{}).WithHeader("kid", eab.KeyID).WithHeader("url", url)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: eab.HMACKey}, opts)
	if err != nil {
		return nil, fmt.Errorf("acme: EAB signer: %w", err)
	}
	sig, err := s.Sign(payload)
	if err != nil {
		return nil, fmt.Errorf("acme: EAB signing: %w", err)
	}
	return flattened(sig)
}

// GetAccount fetches the current state of the client's account
// (POST-as-GET).
func (c *Client) GetAccount(ctx context.Context) (*Account, error) {
	return c.updateAccount(ctx, nil)
}

// UpdateAccount changes the account's contacts (RFC 8555, section 7.3.2).
func (c *Client) UpdateAccount(ctx context.Context, acct Account) (*Account, error) {
	return c.updateAccount(ctx, struct {
		Contact []string `json:"contact"`
	}{acct.Contact})
}

// DeactivateAccount deactivates the account (RFC 8555, section 7.3.6). The
// server refuses every later request signed by its key.
func (c *Client) DeactivateAccount(ctx context.Context) (*Account, error) {
	return c.updateAccount(ctx, struct {
		Status string `json:"status"`
	}{StatusDeactivated})
}

func (c *Client) updateAccount(ctx context.Context, payload any) (*Account, error) {
	kid, err := c.accountID()
	if err != nil {
		return nil, err
	}
	resp, err := c.post(ctx, signer{op: OpAccount}, kid, payload, "", maxJSONBody)
	if err != nil {
		return nil, fmt.Errorf("acme: account update: %w", err)
	}
	a := new(Account)
	if err := decodeJSON(resp, a, "account"); err != nil {
		return nil, err
	}
	a.URL = kid
	return a, nil
}

// RolloverKey replaces the account key with newKey (RFC 8555, section
// 7.3.5). On success the client signs every later request with newKey; the
// old key is refused by the server from then on.
func (c *Client) RolloverKey(ctx context.Context, newKey crypto.Signer) error {
	if _, err := signingAlg(newKey); err != nil {
		return err
	}
	if _, err := signingAlg(c.accountKey()); err != nil {
		return err
	}
	dir, err := c.Directory(ctx)
	if err != nil {
		return err
	}
	if dir.KeyChange == "" {
		return fmt.Errorf("acme: server has no keyChange endpoint")
	}
	kid, err := c.accountID()
	if err != nil {
		return err
	}
	oldKey := c.accountKey()
	oldJWK, err := publicJWK(oldKey)
	if err != nil {
		return err
	}
	inner, err := json.Marshal(struct {
		Account string           `json:"account"`
		OldKey  *jose.JSONWebKey `json:"oldKey"`
	}{kid, oldJWK})
	if err != nil {
		return fmt.Errorf("acme: %w", err)
	}
	innerJWS, err := signJWS(newKey, "", "", dir.KeyChange, inner)
	if err != nil {
		return err
	}
	if _, err := c.post(ctx, signer{key: oldKey, op: OpKeyChange}, dir.KeyChange, json.RawMessage(innerJWS), "", maxJSONBody); err != nil {
		return fmt.Errorf("acme: key change: %w", err)
	}
	c.mu.Lock()
	c.rolledKey = newKey
	c.mu.Unlock()
	return nil
}
