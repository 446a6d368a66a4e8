package acme

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"time"
)

// Challenge types defined by RFC 8555 and RFC 8737.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeDNS01     = "dns-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// A Challenge is one way of proving control of an identifier (RFC 8555,
// section 7.1.5). Challenges of types this package does not know are kept, so
// a caller can inspect them, but [Client.Obtain] never selects them.
//
// The fields after Error are not part of the wire object: the client fills
// them in from the enclosing [Authorization] and the account key before a
// challenge is handed to a [Solver].
type Challenge struct {
	Type      string    `json:"type"`
	URL       string    `json:"url"`
	Status    string    `json:"status"`
	Token     string    `json:"token,omitempty"`
	Validated time.Time `json:"validated,omitzero"`
	Error     *Problem  `json:"error,omitempty"`

	// Identifier is the identifier of the authorization this challenge
	// belongs to, without any "*." wildcard prefix.
	Identifier Identifier `json:"-"`
	// Wildcard reports whether the authorization is for a wildcard name.
	Wildcard bool `json:"-"`
	// KeyAuthorization is token || '.' || base64url(JWK thumbprint of the
	// account key) (RFC 8555, section 8.1).
	KeyAuthorization string `json:"-"`
}

// HTTP01ResourcePath returns the path at which an http-01 challenge must be
// served: /.well-known/acme-challenge/<token>.
func (c Challenge) HTTP01ResourcePath() string {
	return "/.well-known/acme-challenge/" + c.Token
}

// DNS01TXTRecordName returns the fully qualified name (without a trailing
// dot) at which a dns-01 TXT record must be published:
// _acme-challenge.<identifier>.
func (c Challenge) DNS01TXTRecordName() string {
	return "_acme-challenge." + strings.TrimSuffix(strings.TrimPrefix(c.Identifier.Value, "*."), ".")
}

// DNS01TXTValue returns the value of the dns-01 TXT record:
// base64url(SHA-256(key authorization)) (RFC 8555, section 8.4).
func (c Challenge) DNS01TXTValue() string {
	sum := sha256.Sum256([]byte(c.KeyAuthorization))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// A Solver makes a challenge answerable and removes it afterwards.
//
// Present is called before the challenge is accepted at the CA; CleanUp is
// always called once Present has been called, even when issuance fails or the
// caller's context was cancelled (CleanUp then gets a detached context with a
// timeout). Implementations must be safe for concurrent use: an order's
// challenges are presented one after another (and waited for, with
// [Waiter], in parallel), but several orders may run at once.
type Solver interface {
	Present(ctx context.Context, chal Challenge) error
	CleanUp(ctx context.Context, chal Challenge) error
}

// A Waiter is a [Solver] that must wait after Present before the CA can see
// the challenge, for example until a DNS record has propagated. Wait returning
// an error means the challenge is never submitted to the CA.
type Waiter interface {
	Wait(ctx context.Context, chal Challenge) error
}
