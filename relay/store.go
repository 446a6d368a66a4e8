package relay

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/tlsmint/tlsmint/acme"
)

// Storage keys. Everything the relay keeps lives under "relay/".
const (
	keyRoot          = "relay/"
	keyAccounts      = keyRoot + "accounts/"      // <id>: accountRecord
	keyAccountKeys   = keyRoot + "account-keys/"  // <thumbprint>: account id
	keyAccountOrders = keyRoot + "account-order/" // <account>/<created, ns>.<order>: empty
	keyOrders        = keyRoot + "orders/"        // <id>: orderRecord
	keyAuthzs        = keyRoot + "authz/"         // <id>: authzRecord
	keyCerts         = keyRoot + "certs/"         // <id>: certRecord
	keyARI           = keyRoot + "ari/"           // <ARI certificate ID>: cert id
	keyTenants       = keyRoot + "tenants/"       // <id>: Tenant
	keyEAB           = keyRoot + "eab/"           // <key id>: eabRecord (secret)
	keyRates         = keyRoot + "rate/"          // <tenant>: rateRecord
	lockPrefix       = keyRoot + "lock/"
)

// newID returns a random identifier for an account, order, authorization,
// challenge or certificate: 26 characters of lower-case base32.
func newID() string { return strings.ToLower(rand.Text()) }

// validID reports whether s looks like an ID made by newID, so that a
// hostile path never becomes a storage key.
func validID(s string) bool {
	if len(s) != 26 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// errNotFound is returned (wrapped) by load for a missing value.
var errNotFound = fs.ErrNotExist

// load decodes the JSON value under key into v.
func (s *Server) load(ctx context.Context, key string, v any) error {
	b, err := s.Storage.Load(ctx, key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("relay: decoding %s: %w", key, err)
	}
	return nil
}

// save stores v as JSON under key.
func (s *Server) save(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("relay: encoding %s: %w", key, err)
	}
	return s.Storage.Store(ctx, key, b)
}

// defaultLockWait bounds the wait for one object's storage lock: a lock
// held by a request that is stuck, or by a replica that died (until its
// lease expires), gives errLockBusy instead of a request that hangs.
const defaultLockWait = 30 * time.Second

// errLockBusy is returned (wrapped) by lock when the lock was not free
// within the wait.
var errLockBusy = errors.New("relay: the lock stayed busy")

// lock takes the cluster-wide lock of one object, waiting at most
// defaultLockWait (lockWait when set).
func (s *Server) lock(ctx context.Context, name string) (func(), error) {
	wait := s.lockWait
	if wait <= 0 {
		wait = defaultLockWait
	}
	lctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	unlock, err := s.Storage.Lock(lctx, lockPrefix+name)
	if err != nil {
		if ctx.Err() == nil && lctx.Err() != nil {
			return nil, fmt.Errorf("%w: %s after %v: %w", errLockBusy, name, wait, err)
		}
		return nil, err
	}
	return func() {
		if err := unlock(); err != nil {
			s.logger().Warn("relay: releasing a lock failed", "lock", name, "err", err)
		}
	}, nil
}

// lockOrder takes the lock of order id and loads the order as stored; the
// caller unlocks. On an error the lock is not held.
func (s *Server) lockOrder(ctx context.Context, id string) (*orderRecord, func(), error) {
	unlock, err := s.lock(ctx, "order/"+id)
	if err != nil {
		return nil, nil, err
	}
	o := new(orderRecord)
	if err := s.load(ctx, keyOrders+id, o); err != nil {
		unlock()
		return nil, nil, err
	}
	return o, unlock, nil
}

// isNotFound reports whether err means a missing value.
func isNotFound(err error) bool { return errors.Is(err, errNotFound) }

// An accountRecord is a downstream account.
type accountRecord struct {
	ID         string          `json:"id"`
	Key        json.RawMessage `json:"key"` // the public JWK
	Thumbprint string          `json:"thumbprint"`
	Status     string          `json:"status"`
	Contact    []string        `json:"contact,omitempty"`
	TOSAgreed  bool            `json:"tos_agreed,omitempty"`
	Tenant     string          `json:"tenant"`
	EABKeyID   string          `json:"eab_key_id,omitempty"`
	Created    time.Time       `json:"created"`
	// TenantCreated is the tenant's Created when the account joined it:
	// a tenant deleted and created again under the same ID is another
	// tenant, whose Created differs. Zero (accounts stored before it
	// was recorded) is not checked.
	TenantCreated time.Time `json:"tenant_created,omitzero"`
}

// jwk returns the account's public key, or nil if it cannot be decoded.
func (a *accountRecord) jwk() *jose.JSONWebKey {
	k := new(jose.JSONWebKey)
	if err := k.UnmarshalJSON(a.Key); err != nil || !k.IsPublic() {
		return nil
	}
	return k
}

// An orderRecord is a downstream order. Status is what was stored:
// pending orders are ready or invalid once their authorizations are, which
// is worked out when the order is read.
type orderRecord struct {
	ID          string            `json:"id"`
	Account     string            `json:"account"`
	Tenant      string            `json:"tenant"`
	Status      string            `json:"status"`
	Created     time.Time         `json:"created"`
	Expires     time.Time         `json:"expires"`
	Identifiers []acme.Identifier `json:"identifiers"`
	Authzs      []string          `json:"authzs"`
	Profile     string            `json:"profile,omitempty"`
	Replaces    string            `json:"replaces,omitempty"`
	Error       *acme.Problem     `json:"error,omitempty"`
	CSR         []byte            `json:"csr,omitempty"`       // DER, once finalized
	Processing  time.Time         `json:"processing,omitzero"` // when the upstream issuance started
	Cert        string            `json:"cert,omitempty"`      // certificate id, once valid
	// UpstreamName and UpstreamOrder are the upstream and the URL of the
	// upstream order placed for this one, recorded before it is worked
	// on: an answer lost after the upstream issued is recovered from
	// that order, never by ordering again.
	UpstreamName  string `json:"upstream_name,omitempty"`
	UpstreamOrder string `json:"upstream_order,omitempty"`
	// Interrupted says why a processing order's issuance stopped before
	// its end (the relay shut down, or the upstream could not be asked
	// what became of its order); Resumes counts the order's resumed
	// issuances (claimIssue gives it up past maxResumes).
	Interrupted string `json:"interrupted,omitempty"`
	Resumes     int    `json:"resumes,omitempty"`
}

// An authzRecord is a downstream authorization with its challenges.
type authzRecord struct {
	ID         string            `json:"id"`
	Account    string            `json:"account"`
	Identifier acme.Identifier   `json:"identifier"` // without "*."
	Wildcard   bool              `json:"wildcard,omitempty"`
	Status     string            `json:"status"`
	Expires    time.Time         `json:"expires"`
	Challenges []challengeRecord `json:"challenges"`
	// PreAuthorized marks an authorization valid by the tenant's policy,
	// without a validation.
	PreAuthorized bool `json:"pre_authorized,omitempty"`
}

// A challengeRecord is one challenge of an authorization.
type challengeRecord struct {
	ID        string        `json:"id"`
	Type      string        `json:"type"`
	Token     string        `json:"token"`
	Status    string        `json:"status"`
	Validated time.Time     `json:"validated,omitzero"`
	Error     *acme.Problem `json:"error,omitempty"`
}

// A certRecord is a certificate issued through the relay.
type certRecord struct {
	ID          string            `json:"id"`
	Account     string            `json:"account"`
	Tenant      string            `json:"tenant"`
	Order       string            `json:"order"`
	Upstream    string            `json:"upstream"` // Upstream.name()
	Identifiers []acme.Identifier `json:"identifiers"`
	Chains      [][]byte          `json:"chains"` // PEM, the upstream's default first
	ARIID       string            `json:"ari_id"`
	NotBefore   time.Time         `json:"not_before"`
	NotAfter    time.Time         `json:"not_after"`
	Issued      time.Time         `json:"issued"`
	Revoked     bool              `json:"revoked,omitempty"`
	RevokedAt   time.Time         `json:"revoked_at,omitzero"`
	Reason      int               `json:"reason,omitempty"`
	ReplacedBy  string            `json:"replaced_by,omitempty"` // order id
}
