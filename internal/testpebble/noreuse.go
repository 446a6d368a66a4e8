package testpebble

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/letsencrypt/pebble/v2/core"
	"github.com/letsencrypt/pebble/v2/db"
)

// Pebble reuses a valid authorization when rand.Intn(100) <= its reuse
// percentage, so even PEBBLE_AUTHZREUSE=0 reuses one time in a hundred: a
// test that counts challenges then fails at random. With
// [Options.AuthzReusePercent] zero, noReuse makes zero mean never: while
// Pebble handles a newOrder request, the valid authorizations of that
// account for the order's identifiers are marked expired to Pebble's
// lookup, and no other request is served meanwhile.
type noReuse struct {
	db *db.MemoryStore

	// mu is held for reading by every ACME request to the backend and for
	// writing by a newOrder request, so that no request sees the
	// authorizations while they are hidden.
	mu sync.RWMutex

	// authzs holds, by account ID and identifier (see noReuseKey), the
	// authorizations of the orders created so far. Guarded by mu, written
	// only with mu held for writing.
	authzs map[string][]*core.Authorization
}

// maxOrderBody bounds the newOrder body that noReuse reads to find the
// account and identifiers; Pebble refuses larger ones anyway.
const maxOrderBody = 1 << 20

// serve passes r to h, hiding reusable authorizations from a newOrder
// request.
func (n *noReuse) serve(h http.Handler, w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/order-plz" {
		n.mu.RLock()
		defer n.mu.RUnlock()
		h.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxOrderBody))
	if err != nil {
		http.Error(w, "testpebble: reading the request: "+err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	account, idents, replaces := orderRequest(body)

	n.mu.Lock()
	defer n.mu.Unlock()
	// Pebble reads the replaced order's IsReplaced without its lock, while
	// the finalization of another replacement sets it under the lock, in
	// a goroutine of its own (a data race in Pebble 2.10.3 that -race
	// reports when two nodes renew one certificate at once): the order is
	// held for reading meanwhile, so the write waits.
	if orig := n.replacedOrder(replaces); orig != nil {
		orig.RLock()
		defer orig.RUnlock()
	}
	type hidden struct {
		authz   *core.Authorization
		expires time.Time
	}
	var hid []hidden
	for _, id := range idents {
		for _, a := range n.authzs[noReuseKey(account, id)] {
			a.Lock()
			if a.Status == "valid" {
				hid = append(hid, hidden{a, a.ExpiresDate})
				a.ExpiresDate = time.Time{}
			}
			a.Unlock()
		}
	}
	h.ServeHTTP(w, r)
	for _, x := range hid {
		x.authz.Lock()
		x.authz.ExpiresDate = x.expires
		x.authz.Unlock()
	}
	n.record(w.Header().Get("Location"))
}

// record indexes the authorizations of the order at location, the URL
// Pebble answered a newOrder with. The caller holds n.mu for writing.
func (n *noReuse) record(location string) {
	i := strings.LastIndex(location, "/my-order/")
	if i < 0 {
		return
	}
	order := n.db.GetOrderByID(location[i+len("/my-order/"):])
	if order == nil {
		return
	}
	order.RLock()
	account, authzs := order.AccountID, order.AuthorizationObjects
	order.RUnlock()
	if n.authzs == nil {
		n.authzs = make(map[string][]*core.Authorization)
	}
	for _, a := range authzs {
		a.RLock()
		key := noReuseKey(account, identifier{a.Identifier.Type, a.Identifier.Value})
		a.RUnlock()
		n.authzs[key] = append(n.authzs[key], a)
	}
}

// identifier is an ACME identifier of a newOrder payload.
type identifier struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

func noReuseKey(account string, id identifier) string {
	return account + "\x00" + id.Type + "\x00" + strings.ToLower(id.Value)
}

// replacedOrder returns the order that issued the certificate a newOrder's
// "replaces" names (an ARI CertID, base64url(AKI) "." base64url(serial)),
// or nil.
func (n *noReuse) replacedOrder(replaces string) *core.Order {
	_, serial, ok := strings.Cut(replaces, ".")
	if !ok {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(serial)
	if err != nil {
		return nil
	}
	order, err := n.db.GetOrderByIssuedSerial(hex.EncodeToString(new(big.Int).SetBytes(b).Bytes()))
	if err != nil {
		return nil
	}
	return order
}

// orderRequest returns the account ID (the last segment of the JWS key ID),
// the identifiers and the "replaces" value of a newOrder request body, or
// what of them it could read: a malformed request is Pebble's to refuse.
func orderRequest(body []byte) (account string, idents []identifier, replaces string) {
	var jws struct {
		Protected string `json:"protected"`
		Payload   string `json:"payload"`
	}
	if json.Unmarshal(body, &jws) != nil {
		return "", nil, ""
	}
	var header struct {
		KID string `json:"kid"`
	}
	if b, err := base64.RawURLEncoding.DecodeString(jws.Protected); err == nil && json.Unmarshal(b, &header) == nil {
		account = header.KID[strings.LastIndex(header.KID, "/")+1:]
	}
	var payload struct {
		Identifiers []identifier `json:"identifiers"`
		Replaces    string       `json:"replaces"`
	}
	if b, err := base64.RawURLEncoding.DecodeString(jws.Payload); err == nil && json.Unmarshal(b, &payload) == nil {
		idents, replaces = payload.Identifiers, payload.Replaces
	}
	return account, idents, replaces
}
