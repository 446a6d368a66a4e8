package acme

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Challenge types defined by RFC 8555 and RFC 8737, and by the ACME
// working group's drafts draft-ietf-acme-dns-account-label (dns-account-01)
// and draft-ietf-acme-dns-persist (dns-persist-01).
const (
	ChallengeHTTP01    = "http-01"
	ChallengeDNS01     = "dns-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
	// ChallengeDNSAccount01 is dns-01 under an account-specific label
	// (see [Challenge.DNSAccount01TXTRecordName]), so that several ACME
	// clients can validate one name at once.
	ChallengeDNSAccount01 = "dns-account-01"
	// ChallengeDNSPersist01 is validated by a long-lived TXT record at
	// _validation-persist.<name> that names the CA and the account (see
	// [Challenge.DNSPersist01RecordName]); it has no token.
	ChallengeDNSPersist01 = "dns-persist-01"
)

// A Challenge is one way of proving control of an identifier (RFC 8555,
// section 7.1.5). Challenges of types this package does not know are kept, so
// a caller can inspect them, but [Client.Obtain] selects them only for a
// type it has a [Solver] for; one of such a type that does not even decode
// (a token that is not a string, a URL that is not one) is dropped from
// [Authorization.Challenges] rather than failing the authorization.
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
	// IssuerDomainNames are, for dns-persist-01, the CA's issuer domain
	// names, one of which the TXT record must name (1 to 10 of them,
	// lower-case A-labels without a trailing dot, as the draft requires;
	// [Challenge.CheckDNSPersist01] checks them).
	IssuerDomainNames []string `json:"issuer-domain-names,omitempty"`
	// AccountURI is the URI of the account that the dns-persist-01 record
	// must name and from which the dns-account-01 label is computed: as
	// the CA sent it (Pebble does, for dns-persist-01), else the client's
	// account URL, which the client fills in for every challenge.
	AccountURI string   `json:"accounturi,omitempty"`
	Error      *Problem `json:"error,omitempty"`

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

// DNSAccountLabel returns the account-specific label of dns-account-01
// for an account URL, without its leading underscore: the first 10 octets
// of SHA-256(accountURL) in lower-case base32 (RFC 4648), 16 characters
// (draft-ietf-acme-dns-account-label, section 3.2).
func DNSAccountLabel(accountURL string) string {
	sum := sha256.Sum256([]byte(accountURL))
	return strings.ToLower(base32.StdEncoding.EncodeToString(sum[:10]))
}

// DNSAccount01TXTRecordName returns the fully qualified name (without a
// trailing dot) at which a dns-account-01 TXT record must be published:
// _<label>._acme-challenge.<identifier>, with the label of
// [DNSAccountLabel] for c.AccountURI. Its value is the same as dns-01's,
// [Challenge.DNS01TXTValue].
func (c Challenge) DNSAccount01TXTRecordName() string {
	return "_" + DNSAccountLabel(c.AccountURI) + "." + c.DNS01TXTRecordName()
}

// DNSPersist01RecordName returns the fully qualified name (without a
// trailing dot) of the dns-persist-01 TXT record:
// _validation-persist.<identifier>; a wildcard's record is at its base
// name.
func (c Challenge) DNSPersist01RecordName() string {
	return "_validation-persist." + strings.TrimSuffix(strings.TrimPrefix(c.Identifier.Value, "*."), ".")
}

// MaxIssuerDomainNames is the most issuer domain names a dns-persist-01
// challenge may carry; the draft makes clients refuse one with more.
const MaxIssuerDomainNames = 10

// ErrMalformedChallenge is returned (wrapped) for a challenge that its
// type's specification makes clients refuse, such as a dns-persist-01
// challenge without issuer domain names.
var ErrMalformedChallenge = errors.New("acme: malformed challenge")

// CheckDNSPersist01 reports whether c is a dns-persist-01 challenge a
// client may answer: 1 to [MaxIssuerDomainNames] issuer domain names, each
// a lower-case A-label name of at most 253 octets without a trailing dot,
// and an account URI of printable ASCII without spaces or semicolons (it
// goes into the record as a parameter value). Its error wraps
// [ErrMalformedChallenge].
func (c Challenge) CheckDNSPersist01() error {
	if c.Type != ChallengeDNSPersist01 {
		return fmt.Errorf("%w: %q is not %s", ErrMalformedChallenge, clipString(c.Type, 64), ChallengeDNSPersist01)
	}
	switch n := len(c.IssuerDomainNames); {
	case n == 0:
		return fmt.Errorf("%w: %s challenge has no issuer-domain-names", ErrMalformedChallenge, c.Type)
	case n > MaxIssuerDomainNames:
		return fmt.Errorf("%w: %s challenge has %d issuer-domain-names, more than %d", ErrMalformedChallenge, c.Type, n, MaxIssuerDomainNames)
	}
	for _, d := range c.IssuerDomainNames {
		if !validIssuerDomainName(d) {
			return fmt.Errorf("%w: %s issuer domain name %q is not a lower-case A-label name without a trailing dot", ErrMalformedChallenge, c.Type, clipString(d, 64))
		}
	}
	if !validParamValue(c.AccountURI) {
		return fmt.Errorf("%w: %s account URI %q is empty or not printable ASCII without spaces and semicolons", ErrMalformedChallenge, c.Type, clipString(c.AccountURI, 64))
	}
	return nil
}

// validIssuerDomainName reports whether d is a domain name as the
// dns-persist-01 draft has CAs send them: lower-case letters, digits,
// hyphens and dots, labels of 1 to 63 octets, at most 253 in all, no
// trailing dot.
func validIssuerDomainName(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// validParamValue reports whether v can be the value of an RFC 8659
// parameter: one or more of %x21-3A / %x3C-7E (printable ASCII without
// space and ';'), at most 1024 octets.
func validParamValue(v string) bool {
	if v == "" || len(v) > 1024 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x21 || c > 0x7e || c == ';' {
			return false
		}
	}
	return true
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
