package relay

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/tlsmint/tlsmint/acme"
)

// DefaultMaxBodySize bounds a request body when Server.MaxBodySize is zero.
const DefaultMaxBodySize = 64 << 10

// signatureAlgorithms are the JWS algorithms accepted from clients: those
// of the keys the relay accepts (RFC 8555, section 6.2: no "none", no MAC).
var signatureAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.ES384}

// authMode says how a request must identify its signer.
type authMode int

const (
	authKID    authMode = iota // "kid": an existing account (most requests)
	authJWK                    // "jwk": an embedded key (newAccount)
	authEither                 // either (revokeCert)
)

// A signed is a verified JWS request.
type signed struct {
	payload   []byte
	postAsGet bool // the payload is empty (POST-as-GET)
	key       *jose.JSONWebKey
	account   *accountRecord // the kid's account, for authKID
	url       string
}

// flatJWS is the flattened JSON serialization, decoded to check its shape
// before go-jose reads it.
type flatJWS struct {
	Protected  *string         `json:"protected"`
	Payload    *string         `json:"payload"`
	Signature  *string         `json:"signature"`
	Header     json.RawMessage `json:"header"`
	Signatures json.RawMessage `json:"signatures"`
}

// readBody reads a POST body of at most limit bytes.
func readBody(r *http.Request, limit int64) ([]byte, *acme.Problem) {
	if r.Body == nil {
		return nil, malformed("no request body")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, malformed("reading the request body failed")
	}
	if int64(len(body)) > limit {
		return nil, problem(probMalformed, http.StatusRequestEntityTooLarge, "request body larger than %d bytes", limit)
	}
	return body, nil
}

// checkPOST checks what RFC 8555 section 6.2 asks of every POST before its
// body is read: the content type, and no Replay-Nonce header.
func checkPOST(r *http.Request) *acme.Problem {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil || mt != "application/jose+json" {
		return problem(probMalformed, http.StatusUnsupportedMediaType, `Content-Type must be "application/jose+json"`)
	}
	if _, ok := r.Header["Replay-Nonce"]; ok {
		return malformed("the nonce belongs in the JWS protected header, not in a Replay-Nonce request header")
	}
	return nil
}

// parseJWS parses a flattened JWS with exactly one signature, no
// unprotected header and no critical extensions, signed with one of algs.
// It returns the signature's protected header.
func parseJWS(body []byte, algs []jose.SignatureAlgorithm) (*jose.JSONWebSignature, map[string]json.RawMessage, *acme.Problem) {
	var flat flatJWS
	dec := json.NewDecoder(strings.NewReader(string(body)))
	if err := dec.Decode(&flat); err != nil {
		return nil, nil, malformed("the body is not a JWS in flattened JSON serialization")
	}
	if dec.More() {
		return nil, nil, malformed("data after the JWS")
	}
	if len(flat.Signatures) > 0 {
		return nil, nil, malformed(`the JWS must use the flattened serialization, without "signatures"`)
	}
	if len(flat.Header) > 0 {
		return nil, nil, malformed(`the JWS must not have an unprotected "header"`)
	}
	if flat.Protected == nil || flat.Payload == nil || *flat.Protected == "" {
		return nil, nil, malformed(`the JWS needs "protected", "payload" and "signature"`)
	}
	raw, err := base64.RawURLEncoding.DecodeString(*flat.Protected)
	if err != nil {
		return nil, nil, malformed("the protected header is not base64url")
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(raw, &hdr); err != nil || hdr == nil {
		return nil, nil, malformed("the protected header is not a JSON object")
	}
	// The algorithm is judged before the signature's presence: an
	// unsigned JWS ("alg": "none", with an empty or no signature) is a
	// badSignatureAlgorithm, as RFC 8555 section 6.2 and Pebble have it.
	var alg string
	if err := json.Unmarshal(hdr["alg"], &alg); err != nil || alg == "" {
		return nil, nil, malformed(`the protected header needs an "alg"`)
	}
	if !slices.Contains(algs, jose.SignatureAlgorithm(alg)) {
		return nil, nil, badAlgorithm(alg, algs)
	}
	if flat.Signature == nil || *flat.Signature == "" {
		return nil, nil, malformed(`the JWS needs "protected", "payload" and "signature"`)
	}
	for _, name := range []string{"crit", "b64", "x5c", "x5u", "jku"} {
		if _, ok := hdr[name]; ok {
			return nil, nil, malformed("the protected header must not have %q", name)
		}
	}
	jws, err := jose.ParseSignedJSON(string(body), algs)
	if err != nil {
		var alg *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &alg) {
			return nil, nil, badAlgorithm(string(alg.Got), algs)
		}
		return nil, nil, malformed("parsing the JWS: %s", clip(err.Error(), 200))
	}
	if len(jws.Signatures) != 1 {
		return nil, nil, malformed("the JWS must have exactly one signature")
	}
	return jws, hdr, nil
}

// badAlgorithm is the problem for a JWS signed with alg, not one of algs.
func badAlgorithm(alg string, algs []jose.SignatureAlgorithm) *acme.Problem {
	names := make([]string, len(algs))
	for i, a := range algs {
		names[i] = string(a)
	}
	return problem(probBadSignatureAlgorithm, http.StatusBadRequest, "algorithm %q is not accepted (accepted: %s)", clip(alg, 32), strings.Join(names, ", "))
}

// keyAlgorithm returns the one JWS algorithm a public key may sign with, or
// a badPublicKey problem for keys the relay does not accept: ECDSA P-256
// and P-384, RSA of 2048, 3072 or 4096 bits with exponent 65537.
func keyAlgorithm(jwk *jose.JSONWebKey) (jose.SignatureAlgorithm, *acme.Problem) {
	if jwk == nil || !jwk.Valid() || !jwk.IsPublic() {
		return "", problem(probBadPublicKey, http.StatusBadRequest, "not a valid public JWK")
	}
	var alg jose.SignatureAlgorithm
	switch k := jwk.Key.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			alg = jose.ES256
		case elliptic.P384():
			alg = jose.ES384
		default:
			return "", problem(probBadPublicKey, http.StatusBadRequest, "ECDSA keys must be P-256 or P-384")
		}
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 2048, 3072, 4096:
		default:
			return "", problem(probBadPublicKey, http.StatusBadRequest, "RSA keys must have 2048, 3072 or 4096 bits, not %d", k.N.BitLen())
		}
		if k.E != 65537 {
			return "", problem(probBadPublicKey, http.StatusBadRequest, "RSA keys must have the public exponent 65537")
		}
		alg = jose.RS256
	default:
		return "", problem(probBadPublicKey, http.StatusBadRequest, "unsupported key type %T (use ECDSA P-256/P-384 or RSA)", jwk.Key)
	}
	if jwk.Algorithm != "" && jwk.Algorithm != string(alg) {
		return "", malformed("the JWK's alg %q does not match its key (%s)", clip(jwk.Algorithm, 32), alg)
	}
	return alg, nil
}

// verify authenticates a POST as RFC 8555 section 6 demands, as strictly
// as Boulder and Pebble: content type, body size, flattened JWS with one
// signature, alg matching the key, exactly one of "jwk" and "kid" as mode
// wants, an existing valid account for "kid", the signature, a fresh
// nonce used up, and "url" equal to the request's URL.
func (c *call) verify(mode authMode) (*signed, *acme.Problem) {
	s := c.s
	if p := checkPOST(c.r); p != nil {
		return nil, p
	}
	body, p := readBody(c.r, s.maxBody())
	if p != nil {
		return nil, p
	}
	jws, hdr, p := parseJWS(body, signatureAlgorithms)
	if p != nil {
		return nil, p
	}
	h := jws.Signatures[0].Protected
	_, hasJWK := hdr["jwk"]
	_, hasKID := hdr["kid"]
	switch {
	case hasJWK && hasKID:
		return nil, malformed(`"jwk" and "kid" are mutually exclusive`)
	case mode == authJWK && !hasJWK:
		return nil, malformed(`this request must be signed with an embedded "jwk", not a "kid"`)
	case mode == authKID && !hasKID:
		return nil, malformed(`this request must be signed by an account ("kid"), not an embedded "jwk"`)
	case !hasJWK && !hasKID:
		return nil, malformed(`the JWS needs a "jwk" or a "kid"`)
	}
	out := &signed{}
	if hasJWK {
		out.key = h.JSONWebKey
	} else {
		acct, p := c.accountByKID(h.KeyID)
		if p != nil {
			return nil, p
		}
		out.account = acct
		out.key = acct.jwk()
		if out.key == nil {
			return nil, internalError("the account's key cannot be read")
		}
	}
	alg, p := keyAlgorithm(out.key)
	if p != nil {
		return nil, p
	}
	if h.Algorithm != string(alg) {
		return nil, malformed("the JWS algorithm %q does not match the key (%s)", clip(h.Algorithm, 32), alg)
	}
	payload, err := jws.Verify(out.key)
	if err != nil {
		return nil, malformed("the JWS signature does not verify")
	}
	if h.Nonce == "" {
		return nil, problem(probBadNonce, http.StatusBadRequest, "the JWS has no nonce")
	}
	if p := c.redeemNonce(h.Nonce); p != nil {
		return nil, p
	}
	u, _ := h.ExtraHeaders["url"].(string)
	if u == "" {
		return nil, malformed(`the JWS has no "url"`)
	}
	if want := c.requestURL(); u != want {
		return nil, malformed("the JWS url %q is not the request's URL %q", clip(u, 256), want)
	}
	out.url = u
	out.payload = payload
	out.postAsGet = len(payload) == 0
	return out, nil
}

// verifyAs is verify for a request that must carry a payload (payload
// set) or be a POST-as-GET: a request of the other kind is malformed with
// detail. It answers the problem itself and returns nil then.
func (c *call) verifyAs(mode authMode, payload bool, detail string) *signed {
	req, p := c.verify(mode)
	if p == nil && req.postAsGet == payload {
		p = malformed("%s", detail)
	}
	if p != nil {
		c.fail(p)
		return nil
	}
	return req
}

// decode decodes a JSON object payload into v, answering the problem and
// returning false when it does not decode.
func (c *call) decode(payload []byte, v any) bool {
	if p := decodePayload(payload, v); p != nil {
		c.fail(p)
		return false
	}
	return true
}

// verifyOwner is verify for a request to the resources of account id
// itself: signed with its "kid", by that account and no other. It answers
// the problem itself and returns nil then.
func (c *call) verifyOwner(id string) *signed {
	req, p := c.verify(authKID)
	if p == nil && req.account.ID != id {
		p = unauthorized("the request is signed by another account than the one it is for")
	}
	if p != nil {
		c.fail(p)
		return nil
	}
	return req
}

// verified is verify that answers the problem itself and returns nil then.
func (c *call) verified(mode authMode) *signed {
	req, p := c.verify(mode)
	if p != nil {
		c.fail(p)
		return nil
	}
	return req
}

// decodePayload decodes a JSON object payload into v.
func decodePayload(payload []byte, v any) *acme.Problem {
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	if err := dec.Decode(v); err != nil {
		return malformed("the request payload is not the expected JSON object: %s", clip(err.Error(), 200))
	}
	if dec.More() {
		return malformed("data after the request payload")
	}
	return nil
}
