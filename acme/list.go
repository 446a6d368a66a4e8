package acme

import (
	"context"
	"errors"
	"fmt"
)

// ErrUnsupported is returned (wrapped) when the server's directory does not
// offer the endpoint a call needs, such as newAuthz. No request is made.
var ErrUnsupported = errors.New("acme: not supported by this server")

// Bounds on an account's orders list (RFC 8555, section 7.1.2.1).
const (
	maxOrderPages = 100   // pages followed through Link: rel="next"
	maxOrderURLs  = 10000 // order URLs returned in all
)

// NewAuthorization asks for an authorization of id before any order
// (pre-authorization, RFC 8555, section 7.4.1), for example to validate a
// name ahead of time. Servers need not offer it; Let's Encrypt and Pebble
// do not. Without a newAuthz endpoint in the directory it fails with
// [ErrUnsupported] before sending anything.
func (c *Client) NewAuthorization(ctx context.Context, id Identifier) (*Authorization, error) {
	if id.Type != IdentifierDNS && id.Type != IdentifierIP {
		return nil, fmt.Errorf("acme: new authorization: unsupported identifier type %q", id.Type)
	}
	if id.Value == "" {
		return nil, errors.New("acme: new authorization: empty identifier")
	}
	if _, err := signingAlg(c.accountKey()); err != nil {
		return nil, err
	}
	dir, err := c.Directory(ctx)
	if err != nil {
		return nil, err
	}
	if dir.NewAuthz == "" {
		return nil, fmt.Errorf("%w: the directory has no newAuthz (pre-authorization)", ErrUnsupported)
	}
	resp, err := c.post(ctx, signer{op: OpNewAuthz, ids: []Identifier{id}}, dir.NewAuthz, struct {
		Identifier Identifier `json:"identifier"`
	}{id}, "", maxJSONBody)
	if err != nil {
		return nil, fmt.Errorf("acme: new authorization: %w", err)
	}
	if resp.location == "" {
		return nil, malformed("authorization", nil, "the newAuthz response has no Location")
	}
	return c.parseAuthorization(resp, resp.location)
}

// ListOrders returns the URLs of the account's orders (RFC 8555, section
// 7.1.2.1), following the server's pagination (Link: rel="next") for at
// most 100 pages and 10,000 orders. Servers may list only pending orders,
// or only recent ones. acct is the account as returned by
// [Client.GetAccount]; nil fetches it first.
func (c *Client) ListOrders(ctx context.Context, acct *Account) ([]string, error) {
	if acct == nil {
		a, err := c.GetAccount(ctx)
		if err != nil {
			return nil, err
		}
		acct = a
	}
	if acct.Orders == "" {
		return nil, fmt.Errorf("%w: the account has no orders URL", ErrUnsupported)
	}
	var out []string
	seen := map[string]bool{}
	next := acct.Orders
	for page := 0; next != "" && page < maxOrderPages && !seen[next]; page++ {
		seen[next] = true
		resp, err := c.post(ctx, signer{op: OpOrders}, next, nil, "", maxJSONBody)
		if err != nil {
			return out, fmt.Errorf("acme: list orders: %w", err)
		}
		var list struct {
			Orders []string `json:"orders"`
		}
		if err := decodeJSON(resp, &list, "orders list"); err != nil {
			return out, err
		}
		for _, u := range list.Orders {
			if err := checkURL(u); err != nil {
				return out, fmt.Errorf("acme: orders list: %w", err)
			}
			if len(out) == maxOrderURLs {
				return out, nil
			}
			out = append(out, u)
		}
		next = ""
		if links := linkURLs(resp, "next"); len(links) > 0 {
			next = links[0]
		}
	}
	return out, nil
}
