package relay

import (
	"encoding/json"
	"net/http"
	"net/mail"
	"net/url"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/tlsmint/tlsmint/acme"
)

// maxContacts bounds an account's contact URLs.
const maxContacts = 10

// thumbprint returns the RFC 7638 thumbprint of a public JWK.
func thumbprint(k *jose.JSONWebKey) (string, *acme.Problem) {
	tp, err := acme.Thumbprint(k.Key)
	if err != nil {
		return "", problem(probBadPublicKey, http.StatusBadRequest, "the key has no thumbprint")
	}
	return tp, nil
}

// accountObject returns the RFC 8555 account object of a.
func (c *call) accountObject(a *accountRecord) acme.Account {
	return acme.Account{
		Status:               a.Status,
		Contact:              a.Contact,
		TermsOfServiceAgreed: a.TOSAgreed,
		Orders:               c.url(pathAccount + a.ID + "/orders"),
	}
}

// loadAccount returns the account with the given ID (errNotFound if none).
func (c *call) loadAccount(id string) (*accountRecord, error) {
	a := new(accountRecord)
	if err := c.s.load(c.ctx, keyAccounts+id, a); err != nil {
		return nil, err
	}
	return a, nil
}

// accountByThumbprint returns the account registered for a key, or nil.
func (c *call) accountByThumbprint(tp string) (*accountRecord, error) {
	id, err := c.s.Storage.Load(c.ctx, keyAccountKeys+tp)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	a, err := c.loadAccount(string(id))
	if isNotFound(err) {
		return nil, nil // an index entry left by a failed write
	}
	if err != nil {
		return nil, err
	}
	if a.Thumbprint != tp {
		return nil, nil // the key was rolled over; the index is stale
	}
	return a, nil
}

// lockKey takes the lock of the account key whose thumbprint is tp, under
// which an account is bound to a key, and returns the account that has the
// key already (nil: none) and the unlock. A storage failure is answered
// here, and ok is false then.
func (c *call) lockKey(tp string) (existing *accountRecord, unlock func(), ok bool) {
	unlock, err := c.s.lock(c.ctx, "account-key/"+tp)
	if err != nil {
		c.fail(c.storageFailed(err))
		return nil, nil, false
	}
	if existing, err = c.accountByThumbprint(tp); err != nil {
		unlock()
		c.fail(c.storageFailed(err))
		return nil, nil, false
	}
	return existing, unlock, true
}

// accountByKID resolves a JWS "kid" to a valid account whose tenant
// accepts the request's source address.
func (c *call) accountByKID(kid string) (*accountRecord, *acme.Problem) {
	id, ok := strings.CutPrefix(kid, c.url(pathAccount))
	if !ok || !validID(id) {
		return nil, problem(probAccountDoesNotExist, http.StatusBadRequest, "the kid %q is not an account URL of this server", clip(kid, 256))
	}
	a, err := c.loadAccount(id)
	if isNotFound(err) {
		return nil, problem(probAccountDoesNotExist, http.StatusBadRequest, "no account %s", id)
	}
	if err != nil {
		return nil, c.storageFailed(err)
	}
	c.acct = a
	if a.Status != acme.StatusValid {
		return nil, unauthorized("the account is %s", a.Status)
	}
	if _, p := c.accountPolicy(a); p != nil {
		return nil, p
	}
	return a, nil
}

// checkContacts applies Boulder's rules to contact URLs: mailto only, one
// plain address each, at most maxContacts.
func checkContacts(contacts []string) *acme.Problem {
	if len(contacts) > maxContacts {
		return problem(probInvalidContact, http.StatusBadRequest, "at most %d contacts", maxContacts)
	}
	for _, ct := range contacts {
		u, err := url.Parse(ct)
		if err != nil || len(ct) > 320 {
			return problem(probInvalidContact, http.StatusBadRequest, "contact %q is not a URL", clip(ct, 64))
		}
		if u.Scheme != "mailto" {
			return problem(probUnsupportedContact, http.StatusBadRequest, "only mailto: contacts are supported")
		}
		addr := u.Opaque
		if addr == "" || u.RawQuery != "" || strings.ContainsAny(addr, ",;") {
			return problem(probInvalidContact, http.StatusBadRequest, "contact %q must be one plain e-mail address", clip(ct, 64))
		}
		a, err := mail.ParseAddress(addr)
		if err != nil || a.Address != addr || a.Name != "" {
			return problem(probInvalidContact, http.StatusBadRequest, "contact %q is not an e-mail address", clip(ct, 64))
		}
	}
	return nil
}

// newAccount registers an account, or returns the existing one for the
// key (RFC 8555, section 7.3).
func (s *Server) newAccount(c *call) {
	req := c.verifyAs(authJWK, true, "newAccount needs a payload")
	if req == nil {
		return
	}
	var body struct {
		Contact                []string        `json:"contact"`
		TermsOfServiceAgreed   bool            `json:"termsOfServiceAgreed"`
		OnlyReturnExisting     bool            `json:"onlyReturnExisting"`
		ExternalAccountBinding json.RawMessage `json:"externalAccountBinding"`
	}
	if !c.decode(req.payload, &body) {
		return
	}
	tp, p := thumbprint(req.key)
	if p != nil {
		c.fail(p)
		return
	}
	if existing, err := c.accountByThumbprint(tp); err != nil {
		c.fail(c.storageFailed(err))
		return
	} else if existing != nil {
		c.acct = existing
		if existing.Status != acme.StatusValid {
			c.fail(unauthorized("the account of this key is %s", existing.Status))
			return
		}
		if _, p := c.accountPolicy(existing); p != nil {
			c.fail(p)
			return
		}
		c.w.Header().Set("Location", c.url(pathAccount+existing.ID))
		c.reply(http.StatusOK, c.accountObject(existing))
		return
	}
	if body.OnlyReturnExisting {
		c.fail(problem(probAccountDoesNotExist, http.StatusBadRequest, "no account is registered for this key"))
		return
	}
	if s.TermsOfService != "" && !body.TermsOfServiceAgreed {
		c.fail(malformed("the terms of service (%s) must be agreed to", s.TermsOfService))
		return
	}
	if p := checkContacts(body.Contact); p != nil {
		c.fail(p)
		return
	}
	acct := &accountRecord{
		ID: newID(), Thumbprint: tp, Status: acme.StatusValid, Contact: body.Contact,
		TOSAgreed: body.TermsOfServiceAgreed, Created: s.now().UTC(),
	}
	switch {
	case len(body.ExternalAccountBinding) > 0 && string(body.ExternalAccountBinding) != "null":
		tenant, kid, p := c.checkEAB(body.ExternalAccountBinding, req.key)
		if p != nil {
			c.fail(p)
			return
		}
		acct.Tenant, acct.EABKeyID = tenant, kid
	case s.Anonymous == nil:
		c.fail(problem(probExternalAccountRequired, http.StatusBadRequest, "this relay needs External Account Binding: ask its administrator for an EAB key"))
		return
	}
	c.tenant = acct.Tenant
	if _, p := c.policy(acct.Tenant); p != nil {
		c.fail(p)
		return
	}
	acct.TenantCreated = c.tenantCreated
	key, err := req.key.MarshalJSON()
	if err != nil {
		c.fail(problem(probBadPublicKey, http.StatusBadRequest, "the key cannot be encoded"))
		return
	}
	acct.Key = key
	existing, unlock, ok := c.lockKey(tp)
	if !ok {
		return
	}
	defer unlock()
	if existing != nil { // registered by a concurrent request
		c.acct = existing
		c.w.Header().Set("Location", c.url(pathAccount+existing.ID))
		c.reply(http.StatusOK, c.accountObject(existing))
		return
	}
	if err := s.save(c.ctx, keyAccounts+acct.ID, acct); err != nil {
		c.fail(c.storageFailed(err))
		return
	}
	if err := s.Storage.Store(c.ctx, keyAccountKeys+tp, []byte(acct.ID)); err != nil {
		c.fail(c.storageFailed(err))
		return
	}
	c.acct = acct
	c.accepted()
	c.w.Header().Set("Location", c.url(pathAccount+acct.ID))
	c.reply(http.StatusCreated, c.accountObject(acct))
}

// account answers POSTs to an account URL: fetch (POST-as-GET), contact
// update, terms agreement and deactivation (RFC 8555, sections 7.3.2 and
// 7.3.6).
func (s *Server) account(c *call, id string) {
	req := c.verifyOwner(id)
	if req == nil {
		return
	}
	if req.postAsGet {
		c.w.Header().Set("Location", c.url(pathAccount+id))
		c.reply(http.StatusOK, c.accountObject(req.account))
		return
	}
	var body struct {
		Contact              *[]string `json:"contact"`
		Status               string    `json:"status"`
		TermsOfServiceAgreed *bool     `json:"termsOfServiceAgreed"`
	}
	if !c.decode(req.payload, &body) {
		return
	}
	if body.Status != "" && body.Status != acme.StatusDeactivated && body.Status != acme.StatusValid {
		c.fail(malformed("an account's status can only be changed to deactivated"))
		return
	}
	if body.Contact != nil {
		if p := checkContacts(*body.Contact); p != nil {
			c.fail(p)
			return
		}
	}
	unlock, err := s.lock(c.ctx, "account/"+id)
	if err != nil {
		c.fail(c.storageFailed(err))
		return
	}
	defer unlock()
	a, err := c.loadAccount(id)
	if err != nil {
		c.fail(c.storageFailed(err))
		return
	}
	c.acct = a
	if a.Status != acme.StatusValid {
		c.fail(unauthorized("the account is %s", a.Status))
		return
	}
	if body.Contact != nil {
		a.Contact = *body.Contact
	}
	if body.TermsOfServiceAgreed != nil && *body.TermsOfServiceAgreed {
		a.TOSAgreed = true
	}
	if body.Status == acme.StatusDeactivated {
		a.Status = acme.StatusDeactivated
		c.op = "deactivateAccount"
	} else {
		c.op = "updateAccount"
	}
	if err := s.save(c.ctx, keyAccounts+id, a); err != nil {
		c.fail(c.storageFailed(err))
		return
	}
	c.accepted()
	c.w.Header().Set("Location", c.url(pathAccount+id))
	c.reply(http.StatusOK, c.accountObject(a))
}

// OrdersPageSize is the most order URLs one page of an account's orders
// list holds; the next page is linked with Link: rel="next".
const OrdersPageSize = 100

// maxOrdersExamined bounds the orders one page reads (invalid ones are
// skipped): a page may be shorter than OrdersPageSize, with a next link.
const maxOrdersExamined = 4 * OrdersPageSize

// accountOrders answers the account's orders list (RFC 8555, section
// 7.1.2.1): its orders that are not invalid, oldest first, at most
// OrdersPageSize a page, with a Link rel="next" to the rest. The cursor
// of a next page is the index key of the last order the page examined.
func (s *Server) accountOrders(c *call, id string) {
	req := c.verifyOwner(id)
	if req == nil {
		return
	}
	if !req.postAsGet {
		c.fail(malformed("the orders list is read with POST-as-GET"))
		return
	}
	cursor := c.r.URL.Query().Get("cursor")
	if cursor != "" && !validOrderIndexName(cursor) {
		c.fail(malformed("bad cursor"))
		return
	}
	prefix := keyAccountOrders + id + "/"
	keys, err := s.Storage.List(c.ctx, prefix)
	if err != nil {
		c.fail(c.storageFailed(err))
		return
	}
	slices.Sort(keys)
	start := 0
	if cursor != "" {
		start, _ = slices.BinarySearch(keys, prefix+cursor)
		if start < len(keys) && keys[start] == prefix+cursor {
			start++
		}
	}
	out := struct {
		Orders []string `json:"orders"`
	}{Orders: []string{}}
	i := start
	for ; i < len(keys) && len(out.Orders) < OrdersPageSize && i-start < maxOrdersExamined; i++ {
		k := keys[i]
		oid := k[strings.LastIndexAny(k, "/.")+1:]
		o, err := c.loadOrder(oid)
		if err != nil {
			continue
		}
		if o.Status != acme.StatusInvalid {
			out.Orders = append(out.Orders, c.url(pathOrder+oid))
		}
	}
	if i < len(keys) {
		c.link(c.url(pathAccount+id+"/orders")+"?cursor="+keys[i-1][len(prefix):], "next")
	}
	c.reply(http.StatusOK, out)
}

// validOrderIndexName reports whether s is the name of an account's order
// index key: "<20 digits>.<order id>".
func validOrderIndexName(s string) bool {
	ts, id, ok := strings.Cut(s, ".")
	if !ok || len(ts) != 20 || !validID(id) {
		return false
	}
	for i := 0; i < len(ts); i++ {
		if ts[i] < '0' || ts[i] > '9' {
			return false
		}
	}
	return true
}

// keyChange replaces an account's key (RFC 8555, section 7.3.5).
func (s *Server) keyChange(c *call) {
	req := c.verifyAs(authKID, true, "keyChange needs a payload")
	if req == nil {
		return
	}
	inner, hdr, p := parseJWS(req.payload, signatureAlgorithms)
	if p != nil {
		p.Detail = "inner JWS: " + p.Detail
		c.fail(p)
		return
	}
	h := inner.Signatures[0].Protected
	if _, ok := hdr["kid"]; ok {
		c.fail(malformed(`the inner JWS must have a "jwk", not a "kid"`))
		return
	}
	newKey := h.JSONWebKey
	alg, p := keyAlgorithm(newKey)
	if p != nil {
		c.fail(p)
		return
	}
	if h.Algorithm != string(alg) {
		c.fail(malformed("the inner JWS algorithm %q does not match its key (%s)", clip(h.Algorithm, 32), alg))
		return
	}
	if u, _ := h.ExtraHeaders["url"].(string); u != req.url {
		c.fail(malformed(`the inner JWS "url" must be the outer one`))
		return
	}
	payload, err := inner.Verify(newKey)
	if err != nil {
		c.fail(malformed("the inner JWS signature does not verify"))
		return
	}
	var body struct {
		Account string          `json:"account"`
		OldKey  json.RawMessage `json:"oldKey"`
	}
	if !c.decode(payload, &body) {
		return
	}
	if body.Account != c.url(pathAccount+req.account.ID) {
		c.fail(malformed(`the inner payload's "account" is not the signing account`))
		return
	}
	var old jose.JSONWebKey
	if err := old.UnmarshalJSON(body.OldKey); err != nil || !old.IsPublic() {
		c.fail(malformed(`the inner payload's "oldKey" is not a public JWK`))
		return
	}
	if tp, p := thumbprint(&old); p != nil || tp != req.account.Thumbprint {
		c.fail(malformed(`the inner payload's "oldKey" is not the account's key`))
		return
	}
	newTP, p := thumbprint(newKey)
	if p != nil {
		c.fail(p)
		return
	}
	if newTP == req.account.Thumbprint {
		c.fail(malformed("the new key is the account's current key"))
		return
	}
	keyJSON, err := newKey.MarshalJSON()
	if err != nil {
		c.fail(problem(probBadPublicKey, http.StatusBadRequest, "the new key cannot be encoded"))
		return
	}
	other, unlockKey, ok := c.lockKey(newTP)
	if !ok {
		return
	}
	defer unlockKey()
	if other != nil {
		c.w.Header().Set("Location", c.url(pathAccount+other.ID))
		c.fail(problem(probMalformed, http.StatusConflict, "the new key is already an account's key"))
		return
	}
	unlock, err := s.lock(c.ctx, "account/"+req.account.ID)
	if err != nil {
		c.fail(c.storageFailed(err))
		return
	}
	defer unlock()
	a, err := c.loadAccount(req.account.ID)
	if err != nil {
		c.fail(c.storageFailed(err))
		return
	}
	if a.Thumbprint != req.account.Thumbprint || a.Status != acme.StatusValid {
		c.fail(unauthorized("the account changed meanwhile"))
		return
	}
	oldTP := a.Thumbprint
	a.Key, a.Thumbprint = keyJSON, newTP
	// The new index first: a failure in between leaves the old key's
	// index stale (accountByThumbprint ignores it), never the account
	// unreachable.
	if err := s.Storage.Store(c.ctx, keyAccountKeys+newTP, []byte(a.ID)); err != nil {
		c.fail(c.storageFailed(err))
		return
	}
	if err := s.save(c.ctx, keyAccounts+a.ID, a); err != nil {
		c.fail(c.storageFailed(err))
		return
	}
	if err := s.Storage.Delete(c.ctx, keyAccountKeys+oldTP); err != nil {
		s.logger().Warn("relay: removing a rolled-over key's index failed", "account", a.ID, "err", err)
	}
	c.acct = a
	c.accepted()
	c.reply(http.StatusOK, c.accountObject(a))
}
