package acme

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// An Authorization is the server's record of proof of control of one
// identifier (RFC 8555, section 7.1.4).
type Authorization struct {
	URL        string      `json:"-"`
	Status     string      `json:"status"`
	Expires    time.Time   `json:"expires,omitzero"`
	Identifier Identifier  `json:"identifier"`
	Challenges []Challenge `json:"challenges"`
	Wildcard   bool        `json:"wildcard,omitempty"`
	// RetryAfter is the server's Retry-After on the last response.
	RetryAfter time.Duration `json:"-"`
}

// ErrAuthorizationInvalid is returned (wrapped, with the failed challenge's
// problem) when an authorization becomes invalid.
var ErrAuthorizationInvalid = errors.New("acme: authorization is invalid")

// GetAuthorization fetches an authorization (POST-as-GET) by its URL, as
// listed in [Order.Authorizations].
func (c *Client) GetAuthorization(ctx context.Context, url string) (*Authorization, error) {
	resp, err := c.post(ctx, signer{op: OpAuthz}, url, nil, "", maxJSONBody)
	if err != nil {
		return nil, fmt.Errorf("acme: get authorization: %w", err)
	}
	return c.parseAuthorization(resp, url)
}

func (c *Client) parseAuthorization(resp *response, url string) (*Authorization, error) {
	// The challenges are decoded one by one: a CA may offer types this
	// client has never heard of, with fields of their own, and one that
	// does not decode must not make the whole authorization unusable.
	var w struct {
		Authorization
		Challenges []json.RawMessage `json:"challenges"`
	}
	if err := decodeJSON(resp, &w, "authorization"); err != nil {
		return nil, err
	}
	a := &w.Authorization
	a.URL = url
	a.RetryAfter = resp.retryAfter
	if a.Identifier.Type == "" || a.Identifier.Value == "" {
		return nil, malformed("authorization", nil, "no identifier")
	}
	if strings.HasPrefix(a.Identifier.Value, "*.") {
		a.Wildcard = true
		a.Identifier.Value = a.Identifier.Value[2:]
	}
	a.Challenges = make([]Challenge, 0, len(w.Challenges))
	for _, raw := range w.Challenges {
		var ch Challenge
		err := json.Unmarshal(raw, &ch)
		if err == nil {
			err = checkURL(ch.URL)
		}
		if err != nil {
			typ := challengeType(raw)
			if knownChallengeType(typ) {
				return nil, fmt.Errorf("acme: authorization %s challenge: %w", clipString(typ, 64), err)
			}
			c.logger().Debug("acme: ignoring a challenge of an unknown type that does not decode", "identifier", a.Identifier.Value, "type", clipString(typ, 64), "err", err)
			continue
		}
		c.fillChallenge(&ch, a)
		a.Challenges = append(a.Challenges, ch)
	}
	return a, nil
}

// challengeType returns the "type" of a challenge object, or "" if it has
// none that is a string.
func challengeType(raw json.RawMessage) string {
	var t struct {
		Type any `json:"type"`
	}
	_ = json.Unmarshal(raw, &t)
	s, _ := t.Type.(string)
	return s
}

// knownChallengeType reports whether typ is one of the challenge types this
// package defines.
func knownChallengeType(typ string) bool {
	switch typ {
	case ChallengeHTTP01, ChallengeDNS01, ChallengeTLSALPN01, ChallengeDNSAccount01, ChallengeDNSPersist01:
		return true
	}
	return false
}

// fillChallenge sets the client-side fields of a challenge, and its
// account URI when the CA sent none.
func (c *Client) fillChallenge(ch *Challenge, a *Authorization) {
	ch.Identifier = a.Identifier
	ch.Wildcard = a.Wildcard
	if ch.Token != "" {
		if ka, err := c.KeyAuthorization(ch.Token); err == nil {
			ch.KeyAuthorization = ka
		}
	}
	if ch.AccountURI == "" {
		if kid, err := c.accountID(); err == nil {
			ch.AccountURI = kid
		}
	}
}

// ChallengeErrorGrace is how long [Client.WaitAuthorization] keeps polling
// an authorization that is still pending although one of its challenges
// is "processing" with an error: a CA that retries validation by itself
// keeps the challenge processing and shows the last attempt's error (RFC
// 8555, section 8.2). A challenge back at "pending" with an error is not
// being retried — step-ca (and so Caddy's acme_server) leaves a failed
// challenge so, and never retries — and fails the wait at once; Boulder
// and Pebble make it invalid.
const ChallengeErrorGrace = 2 * time.Second

// WaitAuthorization polls an authorization until it is no longer pending.
// It returns the authorization when valid; otherwise an error matching
// [ErrAuthorizationInvalid] that wraps the failed challenge's problem (so
// errors.Is(err, ErrUnauthorized) and friends work, and errors.As finds the
// *Problem). An authorization that stays pending while a challenge carries
// an error fails the same way: at once when the challenge is pending
// again, once ChallengeErrorGrace has passed when it is processing (being
// retried), rather than being polled until ctx ends.
//
// The first poll is made at about the time this server recently took to
// validate (see [Client.PollTimings]).
func (c *Client) WaitAuthorization(ctx context.Context, url string) (*Authorization, error) {
	p := c.newPoller(pollAuthz)
	var (
		retryAfter     time.Duration
		retryAfterSeen bool
		erred          time.Time // when a pending challenge was first seen with an error
	)
	for {
		// Wait first: this is called right after a challenge was accepted,
		// and the server needs a moment to validate it.
		var err error
		if erred.IsZero() {
			err = p.wait(ctx, retryAfter)
		} else {
			err = p.waitAtMost(ctx, ChallengeErrorGrace-time.Since(erred))
		}
		if err != nil {
			return nil, fmt.Errorf("acme: waiting for authorization %s: %w", url, err)
		}
		a, err := c.GetAuthorization(ctx, url)
		if err != nil {
			return nil, err
		}
		switch a.Status {
		case StatusValid:
			p.done(retryAfterSeen)
			return a, nil
		case StatusPending, StatusProcessing:
			if ch := failedChallenge(a); ch != nil {
				if erred.IsZero() {
					erred = time.Now()
					c.logger().DebugContext(ctx, "acme: pending authorization carries a challenge error", "identifier", a.Identifier.Value, "type", ch.Type, "status", ch.Status, "problem", ch.Error)
				}
				if ch.Status == StatusPending || time.Since(erred) >= ChallengeErrorGrace || retryAfter >= ChallengeErrorGrace {
					p.done(retryAfterSeen)
					return a, fmt.Errorf("%w (%s, still %s, %s challenge failed): %w", ErrAuthorizationInvalid, a.Identifier.Value, a.Status, ch.Type, ch.Error)
				}
			}
			retryAfter = a.RetryAfter
			retryAfterSeen = retryAfterSeen || retryAfter > 0
			continue
		}
		p.done(retryAfterSeen)
		return a, authzError(a)
	}
}

// failedChallenge returns a challenge of a that carries an error, if any.
func failedChallenge(a *Authorization) *Challenge {
	for i := range a.Challenges {
		if a.Challenges[i].Error != nil && a.Challenges[i].Status != StatusValid {
			return &a.Challenges[i]
		}
	}
	return nil
}

func authzError(a *Authorization) error {
	for _, ch := range a.Challenges {
		if ch.Error != nil {
			return fmt.Errorf("%w (%s, %s): %w", ErrAuthorizationInvalid, a.Identifier.Value, a.Status, ch.Error)
		}
	}
	return fmt.Errorf("%w (%s, %s)", ErrAuthorizationInvalid, a.Identifier.Value, a.Status)
}

// DeactivateAuthorization deactivates a pending or valid authorization
// (RFC 8555, section 7.5.2), so it cannot be reused.
func (c *Client) DeactivateAuthorization(ctx context.Context, a *Authorization) (*Authorization, error) {
	resp, err := c.post(ctx, signer{op: OpAuthz, ids: []Identifier{a.Identifier}}, a.URL, struct {
		Status string `json:"status"`
	}{StatusDeactivated}, "", maxJSONBody)
	if err != nil {
		return nil, fmt.Errorf("acme: deactivate authorization: %w", err)
	}
	return c.parseAuthorization(resp, a.URL)
}

// AcceptChallenge tells the server the challenge is ready to be validated
// (RFC 8555, section 7.5.1) and returns the challenge as the server now sees
// it (usually "processing").
func (c *Client) AcceptChallenge(ctx context.Context, ch Challenge) (*Challenge, error) {
	resp, err := c.post(ctx, signer{op: OpChallenge, ids: []Identifier{ch.Identifier}}, ch.URL, struct{}{}, "", maxJSONBody)
	if err != nil {
		return nil, fmt.Errorf("acme: accept challenge: %w", err)
	}
	out := new(Challenge)
	if err := decodeJSON(resp, out, "challenge"); err != nil {
		return nil, err
	}
	out.Identifier, out.Wildcard, out.KeyAuthorization = ch.Identifier, ch.Wildcard, ch.KeyAuthorization
	if out.AccountURI == "" {
		out.AccountURI = ch.AccountURI
	}
	if out.URL == "" {
		out.URL = ch.URL
	}
	return out, nil
}
