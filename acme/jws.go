package acme

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
)

// signingAlg returns the JWS algorithm for key, or ErrUnsupportedKey.
func signingAlg(key crypto.Signer) (jose.SignatureAlgorithm, error) {
	if key == nil {
		return "", fmt.Errorf("%w: no key", ErrUnsupportedKey)
	}
	switch pub := key.Public().(type) {
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		}
		return "", fmt.Errorf("%w: ECDSA curve %s (want P-256 or P-384)", ErrUnsupportedKey, pub.Curve.Params().Name)
	case *rsa.PublicKey:
		if pub.N.BitLen() < 2048 {
			return "", fmt.Errorf("%w: RSA key of %d bits (want at least 2048)", ErrUnsupportedKey, pub.N.BitLen())
		}
		return jose.RS256, nil
	}
	return "", fmt.Errorf("%w: %T", ErrUnsupportedKey, key.Public())
}

// joseKey returns what go-jose signs with: the concrete private key when it
// is one, else an opaque signer around the crypto.Signer (HSMs, KMS).
func joseKey(key crypto.Signer) any {
	switch k := key.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey:
		return k
	}
	return cryptosigner.Opaque(key)
}

// publicJWK returns the public JSON Web Key of key.
func publicJWK(key crypto.Signer) (*jose.JSONWebKey, error) {
	if _, err := signingAlg(key); err != nil {
		return nil, err
	}
	return &jose.JSONWebKey{Key: key.Public()}, nil
}

// Thumbprint returns the base64url RFC 7638 SHA-256 thumbprint of the key's
// public JWK.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("acme: thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// KeyAuthorization returns token || '.' || thumbprint(account key) (RFC 8555,
// section 8.1) for the client's account key.
func (c *Client) KeyAuthorization(token string) (string, error) {
	key := c.accountKey()
	if _, err := signingAlg(key); err != nil {
		return "", err
	}
	tp, err := Thumbprint(key.Public())
	if err != nil {
		return "", err
	}
	return token + "." + tp, nil
}

// signJWS signs payload for url. With kid empty the public key is embedded
// as "jwk"; nonce empty omits the nonce (inner JWS of a key change).
func signJWS(key crypto.Signer, kid, nonce, url string, payload []byte) ([]byte, error) {
	alg, err := signingAlg(key)
	if err != nil {
		return nil, err
	}
	opts := &jose.SignerOptions{EmbedJWK: kid == ""}
	opts.WithHeader("url", url)
	if nonce != "" {
		opts.WithHeader("nonce", nonce)
	}
	if kid != "" {
		opts.WithHeader("kid", kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: joseKey(key)}, opts)
	if err != nil {
		return nil, fmt.Errorf("acme: creating signer: %w", err)
	}
	sig, err := signer.Sign(payload)
	if err != nil {
		return nil, fmt.Errorf("acme: signing: %w", err)
	}
	return flattened(sig)
}

// flattened returns the flattened JSON serialization of a one-signature JWS.
// It is built from the compact form because go-jose omits an empty
// "payload" member, which POST-as-GET needs and servers require.
func flattened(sig *jose.JSONWebSignature) ([]byte, error) {
	compact, err := sig.CompactSerialize()
	if err != nil {
		return nil, fmt.Errorf("acme: serializing JWS: %w", err)
	}
	parts := strings.Split(compact, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("acme: serializing JWS: %d parts", len(parts))
	}
	return json.Marshal(struct {
		Protected string `json:"protected"`
		Payload   string `json:"payload"`
		Signature string `json:"signature"`
	}{parts[0], parts[1], parts[2]})
}

// signer selects who signs a request: the account (kid) or a key embedded as
// jwk (newAccount, revocation by certificate key).
type signer struct {
	key    crypto.Signer
	useJWK bool
	op     string       // the Exchange operation reported to the Observer
	ids    []Identifier // the identifiers it is about, when known
}

// post sends a JWS-signed POST of payload (nil payload = POST-as-GET) and
// retries transparently with a fresh nonce when the server answers badNonce.
func (c *Client) post(ctx context.Context, s signer, url string, payload any, accept string, limit int64) (resp *response, err error) {
	start := time.Now()
	attempts := 0
	defer func() { c.observe(s.op, s.ids, start, resp, max(attempts-1, 0), err) }()
	return c.postOnce(ctx, s, url, payload, accept, limit, &attempts)
}

// postOnce is post without the report; attempts counts the requests made.
func (c *Client) postOnce(ctx context.Context, s signer, url string, payload any, accept string, limit int64, attempts *int) (*response, error) {
	if err := checkURL(url); err != nil {
		return nil, err
	}
	if s.key == nil {
		s.key = c.accountKey()
	}
	if _, err := signingAlg(s.key); err != nil {
		return nil, err
	}
	var body []byte
	if payload != nil {
		if raw, ok := payload.(json.RawMessage); ok {
			body = raw
		} else {
			b, err := json.Marshal(payload)
			if err != nil {
				return nil, fmt.Errorf("acme: encoding request: %w", err)
			}
			body = b
		}
	}
	kid := ""
	if !s.useJWK {
		var err error
		if kid, err = c.accountID(); err != nil {
			return nil, err
		}
	}
	var lastErr error
	safe := payload == nil // POST-as-GET may be repeated
	retries := 0
	for try := 0; try < maxTries; try++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		nonce, err := c.nonce(ctx)
		if err != nil {
			return nil, err
		}
		jws, err := signJWS(s.key, kid, nonce, url, body)
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(jws))
		if err != nil {
			return nil, fmt.Errorf("acme: %w", err)
		}
		req.Header.Set("Content-Type", "application/jose+json")
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		*attempts++
		resp, err := c.do(req, limit)
		if err == nil {
			return resp, nil
		}
		if ok, unsent := transient(ctx, err); ok && (safe || unsent) && retries < MaxTransientRetries {
			c.logger().DebugContext(ctx, "acme: transient failure, retrying", "url", url, "retry", retries+1, "err", err)
			if werr := retryWait(ctx, retries); werr != nil {
				return resp, err
			}
			retries++
			try-- // a transient failure is not a rejected nonce
			continue
		}
		if !errors.Is(err, ErrBadNonce) {
			return resp, err
		}
		lastErr = err
		c.logger().DebugContext(ctx, "acme: nonce rejected, retrying", "url", url, "try", try+1)
	}
	return nil, fmt.Errorf("acme: nonce rejected %d times in a row: %w", maxTries, lastErr)
}
