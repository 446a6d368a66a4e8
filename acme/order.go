package acme

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Order and authorization status values (RFC 8555, section 7.1.6).
const (
	StatusPending    = "pending"
	StatusReady      = "ready"
	StatusProcessing = "processing"
	StatusInvalid    = "invalid"
	StatusExpired    = "expired"
)

// An Order is a request for a certificate (RFC 8555, section 7.1.3).
type Order struct {
	// URL is the order's URL. The client carries it even when a response
	// (such as Pebble's finalize) has no Location header.
	URL            string       `json:"-"`
	Status         string       `json:"status"`
	Expires        time.Time    `json:"expires,omitzero"`
	Identifiers    []Identifier `json:"identifiers"`
	NotBefore      time.Time    `json:"notBefore,omitzero"`
	NotAfter       time.Time    `json:"notAfter,omitzero"`
	Error          *Problem     `json:"error,omitempty"`
	Authorizations []string     `json:"authorizations"`
	Finalize       string       `json:"finalize"`
	Certificate    string       `json:"certificate,omitempty"`
	// Profile is the profile the order was placed with (ACME profiles).
	Profile string `json:"profile,omitempty"`
	// Replaces is the ARI certificate ID of the certificate this order
	// replaces (RFC 9773).
	Replaces string `json:"replaces,omitempty"`
	// RetryAfter is the server's Retry-After on the last response for
	// this order.
	RetryAfter time.Duration `json:"-"`
}

// OrderRequest describes a new order.
type OrderRequest struct {
	// Identifiers lists the names and addresses; see [DNSNames] and
	// [IPAddresses]. At least one is required.
	Identifiers []Identifier
	// Profile selects a certificate profile the server offers in
	// [DirectoryMeta.Profiles]; empty means the server's default.
	Profile string
	// Replaces is the ARI certificate ID ([CertificateID]) of a
	// certificate this order replaces (RFC 9773); empty for none.
	Replaces string
	// NotBefore and NotAfter request a validity period; zero means the
	// server decides. Most public CAs refuse them.
	NotBefore, NotAfter time.Time
}

type orderPayload struct {
	Identifiers []Identifier `json:"identifiers"`
	NotBefore   string       `json:"notBefore,omitempty"`
	NotAfter    string       `json:"notAfter,omitempty"`
	Profile     string       `json:"profile,omitempty"`
	Replaces    string       `json:"replaces,omitempty"`
}

// NewOrder places an order (RFC 8555, section 7.4).
//
// Identifiers are normalised first ([NormalizeIdentifiers]). An order whose
// identifiers differ, as a set, from those requested is refused with
// [ErrOrderMismatch]: it must not be finalized.
func (c *Client) NewOrder(ctx context.Context, req OrderRequest) (*Order, error) {
	ids, err := NormalizeIdentifiers(req.Identifiers)
	if err != nil {
		return nil, fmt.Errorf("acme: new order: %w", err)
	}
	req.Identifiers = ids
	if _, err := signingAlg(c.accountKey()); err != nil {
		return nil, err
	}
	dir, err := c.Directory(ctx)
	if err != nil {
		return nil, err
	}
	if req.Profile != "" {
		if _, ok := dir.Meta.Profiles[req.Profile]; !ok {
			p := *ErrInvalidProfile
			if len(dir.Meta.Profiles) == 0 {
				p.Detail = fmt.Sprintf("profile %q requested, but this CA's directory offers no profiles", req.Profile)
			} else {
				p.Detail = fmt.Sprintf("profile %q is not offered by this CA (it offers %s)", req.Profile, strings.Join(slices.Sorted(maps.Keys(dir.Meta.Profiles)), ", "))
			}
			return nil, &p
		}
	}
	p := orderPayload{Identifiers: req.Identifiers, Profile: req.Profile, Replaces: req.Replaces}
	if !req.NotBefore.IsZero() {
		p.NotBefore = req.NotBefore.UTC().Format(time.RFC3339)
	}
	if !req.NotAfter.IsZero() {
		p.NotAfter = req.NotAfter.UTC().Format(time.RFC3339)
	}
	resp, err := c.post(ctx, signer{op: OpNewOrder, ids: req.Identifiers}, dir.NewOrder, p, "", maxJSONBody)
	if err != nil {
		return nil, fmt.Errorf("acme: new order: %w", err)
	}
	if resp.location == "" {
		return nil, malformed("order", nil, "the newOrder response has no Location")
	}
	o, err := parseOrder(resp, resp.location)
	if err != nil {
		return nil, err
	}
	if !sameIdentifiers(o.Identifiers, req.Identifiers) {
		return nil, fmt.Errorf("%w: the CA's order %s is for %v, requested %v", ErrOrderMismatch, o.URL, clipIdentifiers(o.Identifiers), req.Identifiers)
	}
	return o, nil
}

// ErrOrderMismatch is returned (wrapped) when the CA answers a new order
// with an order for other identifiers than those requested.
var ErrOrderMismatch = errors.New("acme: order identifiers differ from the request")

// sameIdentifiers compares two identifier lists as sets, after
// normalisation.
func sameIdentifiers(got, want []Identifier) bool {
	g, err := NormalizeIdentifiers(got)
	if err != nil {
		return false
	}
	key := func(ids []Identifier) []string {
		out := make([]string, 0, len(ids))
		for _, id := range ids {
			out = append(out, id.Type+":"+id.Value)
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(key(g), key(want))
}

// clipIdentifiers bounds what a CA's identifiers add to an error.
func clipIdentifiers(ids []Identifier) []string {
	out := make([]string, 0, min(len(ids), 10))
	for i, id := range ids {
		if i == 10 {
			out = append(out, fmt.Sprintf("… %d more", len(ids)-10))
			break
		}
		out = append(out, clipString(id.String(), 256))
	}
	return out
}

func parseOrder(resp *response, url string) (*Order, error) {
	o := new(Order)
	if err := decodeJSON(resp, o, "order"); err != nil {
		return nil, err
	}
	o.URL = url
	o.RetryAfter = resp.retryAfter
	for _, u := range o.Authorizations {
		if err := checkURL(u); err != nil {
			return nil, fmt.Errorf("acme: order authorization: %w", err)
		}
	}
	if o.Finalize != "" {
		if err := checkURL(o.Finalize); err != nil {
			return nil, fmt.Errorf("acme: order finalize: %w", err)
		}
	}
	if o.Certificate != "" {
		if err := checkURL(o.Certificate); err != nil {
			return nil, fmt.Errorf("acme: order certificate: %w", err)
		}
	}
	switch o.Status {
	case StatusPending, StatusReady, StatusProcessing, StatusValid, StatusInvalid, StatusExpired:
	default:
		return nil, malformed("order", nil, "unknown status %q", clipString(o.Status, 64))
	}
	return o, nil
}

// GetOrder fetches the current state of an order (POST-as-GET).
func (c *Client) GetOrder(ctx context.Context, url string) (*Order, error) {
	resp, err := c.post(ctx, signer{op: OpOrder}, url, nil, "", maxJSONBody)
	if err != nil {
		return nil, fmt.Errorf("acme: get order: %w", err)
	}
	return parseOrder(resp, url)
}

// ErrOrderInvalid is returned (wrapped, together with the order's problem
// when it has one) when an order becomes invalid.
var ErrOrderInvalid = errors.New("acme: order is invalid")

// WaitOrder polls the order until it is no longer pending or processing, and
// returns it. An invalid order is returned with an error matching
// [ErrOrderInvalid] and the order's problem.
func (c *Client) WaitOrder(ctx context.Context, o *Order) (*Order, error) {
	p := c.newPoller(pollOrder)
	cur := o
	retryAfterSeen := false
	for {
		switch cur.Status {
		case StatusValid, StatusReady:
			p.done(retryAfterSeen)
			return cur, nil
		case StatusInvalid, StatusExpired:
			p.done(retryAfterSeen)
			return cur, orderError(cur)
		}
		retryAfterSeen = retryAfterSeen || cur.RetryAfter > 0
		if err := p.wait(ctx, cur.RetryAfter); err != nil {
			return cur, fmt.Errorf("acme: waiting for order %s (still %s): %w", cur.URL, cur.Status, err)
		}
		next, err := c.GetOrder(ctx, cur.URL)
		if err != nil {
			if ctx.Err() != nil {
				return cur, fmt.Errorf("acme: waiting for order %s (still %s): %w", cur.URL, cur.Status, err)
			}
			return cur, err
		}
		cur = next
	}
}

func orderError(o *Order) error {
	if o.Error != nil {
		return fmt.Errorf("%w (%s): %w", ErrOrderInvalid, o.Status, o.Error)
	}
	return fmt.Errorf("%w (%s)", ErrOrderInvalid, o.Status)
}

// FinalizeOrder submits the CSR (DER) for a ready order and polls until the
// certificate is issued (status valid) or the order fails. The order's URL is
// carried over, since the finalize response need not have a Location.
func (c *Client) FinalizeOrder(ctx context.Context, o *Order, csrDER []byte) (*Order, error) {
	if o == nil || o.Finalize == "" {
		return nil, errors.New("acme: finalize: order has no finalize URL")
	}
	resp, err := c.post(ctx, signer{op: OpFinalize, ids: o.Identifiers}, o.Finalize, struct {
		CSR string `json:"csr"`
	}{base64.RawURLEncoding.EncodeToString(csrDER)}, "", maxJSONBody)
	if err != nil {
		return nil, fmt.Errorf("acme: finalize: %w", err)
	}
	url := o.URL
	if resp.location != "" {
		url = resp.location
	}
	cur, err := parseOrder(resp, url)
	if err != nil {
		return nil, err
	}
	done, err := c.WaitOrder(ctx, cur)
	if err != nil {
		return done, err
	}
	if done.Status != StatusValid || done.Certificate == "" {
		return done, fmt.Errorf("%w: it is %s", ErrNoCertificateURL, done.Status)
	}
	return done, nil
}

// ErrNoCertificateURL is returned (wrapped, with the order's status) by
// [Client.FinalizeOrder] when the order the finalization ends with is not
// valid with a certificate URL: "ready" again, or "valid" without one.
var ErrNoCertificateURL = errors.New("acme: finalize: the order has no certificate URL")
