package testpebble

// A minimal ACME client, just enough to drive Pebble through whole flows and
// check that the validation authority reaches the test's solvers through the
// mock DNS server.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

type staticNonce string

func (n staticNonce) Nonce() (string, error) { return string(n), nil }

type identifier struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

type problem struct {
	Type   string `json:"type"`
	Detail string `json:"detail"`
}

type order struct {
	Status         string       `json:"status"`
	Identifiers    []identifier `json:"identifiers"`
	Authorizations []string     `json:"authorizations"`
	Finalize       string       `json:"finalize"`
	Certificate    string       `json:"certificate"`
	Error          *problem     `json:"error"`
}

type challenge struct {
	Type   string   `json:"type"`
	URL    string   `json:"url"`
	Token  string   `json:"token"`
	Status string   `json:"status"`
	Error  *problem `json:"error"`
}

type authorization struct {
	Status     string      `json:"status"`
	Identifier identifier  `json:"identifier"`
	Wildcard   bool        `json:"wildcard"`
	Challenges []challenge `json:"challenges"`
}

// acmeClient is a tiny ACME client for these tests. Not safe for concurrent
// use.
type acmeClient struct {
	t      *testing.T
	ca     *CA
	dir    directory
	http   *http.Client
	key    *ecdsa.PrivateKey
	kid    string
	nonce  string
	thumb  string
	lastRA string // Retry-After of the last response
}

func newACMEClient(t *testing.T, c *CA) *acmeClient {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwk := jose.JSONWebKey{Key: key.Public()}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return &acmeClient{
		t: t, ca: c, dir: fetchDirectory(t, c), http: c.HTTPClient(), key: key,
		thumb: base64.RawURLEncoding.EncodeToString(thumb),
	}
}

// post sends a JWS-signed POST; a nil payload is a POST-as-GET.
func (a *acmeClient) post(url string, payload any) (*http.Response, []byte) {
	a.t.Helper()
	if a.nonce == "" {
		resp, _ := get(a.t, a.ca, http.MethodHead, a.dir.NewNonce)
		a.nonce = resp.Header.Get("Replay-Nonce")
	}
	var body []byte
	if payload != nil {
		var err error
		if body, err = json.Marshal(payload); err != nil {
			a.t.Fatal(err)
		}
	}
	opts := (&jose.SignerOptions{NonceSource: staticNonce(a.nonce)}).WithHeader("url", url)
	signingKey := jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: a.key, KeyID: a.kid}}
	if a.kid == "" {
		opts.EmbedJWK = true
		signingKey.Key = a.key
	}
	signer, err := jose.NewSigner(signingKey, opts)
	if err != nil {
		a.t.Fatal(err)
	}
	jws, err := signer.Sign(body)
	if err != nil {
		a.t.Fatal(err)
	}
	// go-jose leaves out an empty payload, which POST-as-GET needs.
	var flat map[string]any
	if err := json.Unmarshal([]byte(jws.FullSerialize()), &flat); err != nil {
		a.t.Fatal(err)
	}
	if _, ok := flat["payload"]; !ok {
		flat["payload"] = ""
	}
	wire, err := json.Marshal(flat)
	if err != nil {
		a.t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(wire))
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/jose+json")
	req.Header.Set("User-Agent", "testpebble-test")
	resp, err := a.http.Do(req)
	if err != nil {
		a.t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatalf("POST %s: %v", url, err)
	}
	a.nonce = resp.Header.Get("Replay-Nonce")
	a.lastRA = resp.Header.Get("Retry-After")
	return resp, respBody
}

// postJSON posts and decodes the answer into out, failing unless the status
// is wantStatus.
func (a *acmeClient) postJSON(url string, payload any, wantStatus int, out any) *http.Response {
	a.t.Helper()
	resp, body := a.post(url, payload)
	if resp.StatusCode != wantStatus {
		a.t.Fatalf("POST %s: status %d, want %d; body %s", url, resp.StatusCode, wantStatus, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			a.t.Fatalf("POST %s: decode: %v; body %s", url, err, body)
		}
	}
	return resp
}

func (a *acmeClient) register() {
	a.t.Helper()
	resp := a.postJSON(a.dir.NewAccount, map[string]any{"termsOfServiceAgreed": true}, http.StatusCreated, nil)
	a.kid = resp.Header.Get("Location")
	if a.kid == "" {
		a.t.Fatal("newAccount: no Location")
	}
}

func (a *acmeClient) keyAuth(token string) string { return token + "." + a.thumb }

// poll POST-as-GETs url until its status is not pending/processing.
func (a *acmeClient) poll(url string, out any, status func() string) {
	a.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		a.postJSON(url, nil, http.StatusOK, out)
		if s := status(); s != "pending" && s != "processing" {
			return
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("%s still %s after 30s", url, status())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// solver prepares a challenge (and returns a function undoing it).
type solver func(a *acmeClient, authz authorization, chal challenge)

// obtain runs a whole issuance for ids, with solve answering chalType
// challenges, and returns the verified chain (leaf first).
func (a *acmeClient) obtain(ids []identifier, chalType string, solve solver) []*x509.Certificate {
	a.t.Helper()
	var o order
	resp := a.postJSON(a.dir.NewOrder, map[string]any{"identifiers": ids}, http.StatusCreated, &o)
	orderURL := resp.Header.Get("Location")
	for _, authzURL := range o.Authorizations {
		var authz authorization
		a.postJSON(authzURL, nil, http.StatusOK, &authz)
		if authz.Status == "valid" {
			continue
		}
		var chal *challenge
		for i := range authz.Challenges {
			if authz.Challenges[i].Type == chalType {
				chal = &authz.Challenges[i]
			}
		}
		if chal == nil {
			a.t.Fatalf("authz %s has no %s challenge: %+v", authz.Identifier, chalType, authz.Challenges)
		}
		if solve != nil {
			solve(a, authz, *chal)
		}
		a.postJSON(chal.URL, struct{}{}, http.StatusOK, nil)
		a.poll(authzURL, &authz, func() string { return authz.Status })
		if authz.Status != "valid" {
			a.t.Fatalf("authz %v: status %s: %+v", authz.Identifier, authz.Status, authz.Challenges)
		}
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		a.t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{}
	for _, id := range ids {
		if id.Type == "ip" {
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(id.Value))
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, id.Value)
		}
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		a.t.Fatal(err)
	}
	a.postJSON(o.Finalize, map[string]string{"csr": base64.RawURLEncoding.EncodeToString(csr)}, http.StatusOK, &o)
	a.poll(orderURL, &o, func() string { return o.Status })
	if o.Status != "valid" {
		a.t.Fatalf("order status %s, error %+v", o.Status, o.Error)
	}
	_, body := a.post(o.Certificate, nil)
	chain := parsePEMChain(a.t, body)
	if len(chain) < 2 {
		a.t.Fatalf("certificate chain has %d certificates", len(chain))
	}
	if !chain[0].PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
		a.t.Fatal("leaf does not carry the CSR's key")
	}
	opts := x509VerifyOptions(a.ca)
	for _, c := range chain[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := chain[0].Verify(opts); err != nil {
		a.t.Fatalf("leaf does not verify against RootPool: %v", err)
	}
	return chain
}

func x509VerifyOptions(c *CA) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: c.RootPool(), Intermediates: x509.NewCertPool()}
}

func parsePEMChain(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	var chain []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return chain
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatalf("parse certificate: %v", err)
		}
		chain = append(chain, cert)
	}
}

// serveHTTP01 answers http-01 challenges on 127.0.0.1:port and counts the
// requests.
func serveHTTP01(t *testing.T, port int, keyAuths *sync.Map, hits *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("listen for http-01: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		token, ok := strings.CutPrefix(r.URL.Path, "/.well-known/acme-challenge/")
		v, found := keyAuths.Load(token)
		if !ok || !found {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, v.(string))
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

func TestIssueHTTP01(t *testing.T) {
	t.Parallel()
	c := newCA(t, Options{})
	var keyAuths sync.Map
	var hits atomic.Int64
	serveHTTP01(t, c.HTTPPort(), &keyAuths, &hits)

	a := newACMEClient(t, c)
	a.register()
	ids := []identifier{{"dns", "www.example.test"}, {"ip", "127.0.0.1"}}
	chain := a.obtain(ids, "http-01", func(a *acmeClient, _ authorization, chal challenge) {
		keyAuths.Store(chal.Token, a.keyAuth(chal.Token))
	})
	if got := chain[0].DNSNames; len(got) != 1 || got[0] != "www.example.test" {
		t.Errorf("leaf DNSNames = %v", got)
	}
	if got := chain[0].IPAddresses; len(got) != 1 || !got[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("leaf IPAddresses = %v", got)
	}
	// Pebble validates each challenge from three "perspectives".
	if got := hits.Load(); got != 6 {
		t.Errorf("http-01 server got %d requests, want 6 (3 per challenge)", got)
	}
	for _, e := range []string{"newAccount", "newOrder", "finalize", "certificate"} {
		if got := c.Requests(e); got != 1 {
			t.Errorf("Requests(%s) = %d, want 1", e, got)
		}
	}
	if got := c.Requests("challenge"); got != 2 {
		t.Errorf("Requests(challenge) = %d, want 2", got)
	}
}

func TestIssueDNS01(t *testing.T) {
	t.Parallel()
	c := newCA(t, Options{})
	c.DNS().AddZone("example.test")
	// The second name delegates its challenge to another zone by CNAME.
	c.DNS().SetCNAME("_acme-challenge.delegated.example.test", "delegated.validation.test")

	a := newACMEClient(t, c)
	a.register()
	ids := []identifier{{"dns", "*.example.test"}, {"dns", "delegated.example.test"}}
	chain := a.obtain(ids, "dns-01", func(a *acmeClient, authz authorization, chal challenge) {
		sum := sha256.Sum256([]byte(a.keyAuth(chal.Token)))
		name := "_acme-challenge." + authz.Identifier.Value
		if authz.Identifier.Value == "delegated.example.test" {
			name = "delegated.validation.test"
		}
		c.DNS().AddTXT(name, "unrelated value")
		c.DNS().AddTXT(name, base64.RawURLEncoding.EncodeToString(sum[:]))
	})
	if got := strings.Join(chain[0].DNSNames, ","); got != "*.example.test,delegated.example.test" &&
		got != "delegated.example.test,*.example.test" {
		t.Errorf("leaf DNSNames = %v", chain[0].DNSNames)
	}
}

func TestIssueTLSALPN01(t *testing.T) {
	t.Parallel()
	c := newCA(t, Options{})
	var mu sync.Mutex
	certs := map[string]*tls.Certificate{}
	ln, err := tls.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(c.TLSPort())), &tls.Config{
		NextProtos: []string{"acme-tls/1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			mu.Lock()
			defer mu.Unlock()
			if cert := certs[hello.ServerName]; cert != nil {
				return cert, nil
			}
			return nil, errors.New("no certificate")
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				conn.(*tls.Conn).Handshake()
				conn.Close()
			}()
		}
	}()

	a := newACMEClient(t, c)
	a.register()
	a.obtain([]identifier{{"dns", "alpn.example.test"}}, "tls-alpn-01", func(a *acmeClient, authz authorization, chal challenge) {
		cert := alpnCert(t, authz.Identifier.Value, a.keyAuth(chal.Token))
		mu.Lock()
		certs[authz.Identifier.Value] = cert
		mu.Unlock()
	})
}

// alpnCert returns an RFC 8737 tls-alpn-01 challenge certificate.
func alpnCert(t *testing.T, name, keyAuth string) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(keyAuth))
	value, err := asn1.Marshal(sum[:])
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "acme challenge"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{name},
		ExtraExtensions: []pkix.Extension{{
			Id: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}, Critical: true, Value: value,
		}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestNonceReject100(t *testing.T) {
	t.Parallel()
	c := newCA(t, Options{NonceRejectPercent: 100})
	a := newACMEClient(t, c)
	for i := range 5 {
		resp, body := a.post(a.dir.NewAccount, map[string]any{"termsOfServiceAgreed": true})
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("attempt %d: status %d, want 400; body %s", i, resp.StatusCode, body)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
			t.Errorf("attempt %d: Content-Type %q, want application/problem+json", i, ct)
		}
		var p problem
		if err := json.Unmarshal(body, &p); err != nil || p.Type != "urn:ietf:params:acme:error:badNonce" {
			t.Fatalf("attempt %d: problem %+v (%v), want badNonce", i, p, err)
		}
		if a.nonce == "" {
			t.Fatalf("attempt %d: badNonce answer without a Replay-Nonce", i)
		}
	}
}

func TestNonceRejectDefaultIsZero(t *testing.T) {
	t.Parallel()
	c := newCA(t, Options{})
	for range 20 {
		newACMEClient(t, c).register() // fails on any badNonce
	}
}

func TestAlwaysValidAndRetryAfter(t *testing.T) {
	t.Parallel()
	c := newCA(t, Options{AlwaysValid: true, RetryAfterOrder: 7})
	a := newACMEClient(t, c)
	a.register()

	var o order
	resp := a.postJSON(a.dir.NewOrder, map[string]any{"identifiers": []identifier{{"dns", "nothing.listens.test"}}}, http.StatusCreated, &o)
	orderURL := resp.Header.Get("Location")
	var authz authorization
	a.postJSON(o.Authorizations[0], nil, http.StatusOK, &authz)
	a.postJSON(authz.Challenges[0].URL, struct{}{}, http.StatusOK, nil)
	a.poll(o.Authorizations[0], &authz, func() string { return authz.Status })
	if authz.Status != "valid" {
		t.Fatalf("authz status %s with AlwaysValid, want valid", authz.Status)
	}

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"nothing.listens.test"}}, key)
	resp = a.postJSON(o.Finalize, map[string]string{"csr": base64.RawURLEncoding.EncodeToString(csr)}, http.StatusOK, &o)
	ra := a.lastRA
	if secs, err := strconv.Atoi(ra); err == nil {
		if secs != 7 {
			t.Errorf("Retry-After = %d seconds, want 7", secs)
		}
	} else if when, err := http.ParseTime(ra); err != nil {
		t.Errorf("Retry-After %q is neither seconds nor an HTTP date", ra)
	} else if d := time.Until(when); d < 0 || d > 8*time.Second {
		t.Errorf("Retry-After %q is %v away, want about 7s", ra, d)
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		t.Logf("finalize now has a Location header (%q): update the package doc", loc)
	}
	a.poll(orderURL, &o, func() string { return o.Status })
	if o.Status != "valid" {
		t.Fatalf("order status %s", o.Status)
	}
}

func TestRevokeRenewalInfoEAB(t *testing.T) {
	t.Parallel()
	c := newCA(t, Options{AlwaysValid: true, EABKeys: map[string]string{"kid-1": "c2VjcmV0"}})
	a := newACMEClient(t, c)
	a.register()
	chain := a.obtain([]identifier{{"dns", "ari.example.test"}}, "http-01", nil)
	leaf := chain[0]
	base := strings.TrimSuffix(c.DirectoryURL(), "/dir")

	// Renewal info.
	start := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	end := start.Add(48 * time.Hour)
	if err := c.SetRenewalInfo(leaf, start, end, "https://example.test/why"); err != nil {
		t.Fatalf("SetRenewalInfo: %v", err)
	}
	certID := base64.RawURLEncoding.EncodeToString(leaf.AuthorityKeyId) + "." +
		base64.RawURLEncoding.EncodeToString(leaf.SerialNumber.Bytes())
	resp, body := get(t, c, http.MethodGet, a.dir.RenewalInfo+"/"+certID)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET renewalInfo: status %d; body %s", resp.StatusCode, body)
	}
	var ri renewalInfo
	if err := json.Unmarshal(body, &ri); err != nil {
		t.Fatalf("decode renewalInfo: %v; body %s", err, body)
	}
	if !ri.SuggestedWindow.Start.Equal(start) || !ri.SuggestedWindow.End.Equal(end) || ri.ExplanationURL != "https://example.test/why" {
		t.Errorf("renewalInfo = %s, want window %v..%v and the explanation URL", body, start, end)
	}
	if got := resp.Header.Get("Retry-After"); got != "21600" {
		t.Errorf("renewalInfo Retry-After = %q, want 21600", got)
	}
	if err := c.SetRenewalInfoJSON(leaf, "{not json"); err != nil {
		t.Fatalf("SetRenewalInfoJSON: %v", err)
	}
	if _, body := get(t, c, http.MethodGet, a.dir.RenewalInfo+"/"+certID); string(body) != "{not json" {
		t.Errorf("renewalInfo body = %q, want the raw string", body)
	}

	// Revocation.
	if err := c.Revoke(leaf, 4); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if err := c.Revoke(leaf, 4); err == nil {
		t.Errorf("second Revoke succeeded, want an error")
	}
	if err := c.Revoke(c.Roots()[0], 0); err == nil {
		t.Errorf("Revoke of a root succeeded")
	}
	foreign, err := x509.ParseCertificate(alpnCert(t, "foreign.test", "x").Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Revoke(foreign, 0); err == nil {
		t.Errorf("Revoke of a certificate the CA did not issue succeeded")
	}
	_, body = get(t, c, http.MethodGet, base+"/cert-status-by-serial/"+leaf.SerialNumber.Text(16))
	var status struct {
		Status string
		Reason *uint
	}
	if err := json.Unmarshal(body, &status); err != nil || status.Status != "Revoked" || status.Reason == nil || *status.Reason != 4 {
		t.Errorf("certificate status = %s, want Revoked with reason 4", body)
	}
	resp, body = a.post(a.dir.RevokeCert, map[string]string{"certificate": base64.RawURLEncoding.EncodeToString(leaf.Raw)})
	if resp.StatusCode == http.StatusOK || !bytes.Contains(body, []byte("alreadyRevoked")) {
		t.Errorf("revokeCert after Revoke: status %d, body %s; want alreadyRevoked", resp.StatusCode, body)
	}

	// EAB keys.
	if err := c.AddEABKey("kid-2", "c2VjcmV0Mg"); err != nil {
		t.Errorf("AddEABKey: %v", err)
	}
	if err := c.AddEABKey("kid-1", "c2VjcmV0"); err == nil {
		t.Errorf("AddEABKey of an existing key ID succeeded")
	}
	if err := c.AddEABKey("kid-3", "not base64!"); err == nil {
		t.Errorf("AddEABKey of a malformed key succeeded")
	}
}

func TestEnvRestored(t *testing.T) {
	// Not parallel: it sets the environment that New sets and restores.
	t.Setenv(envNonceReject, "42")
	before, hadBefore := lookupEnv(envVANoSleep)
	newCA(t, Options{})
	if got, _ := lookupEnv(envNonceReject); got != "42" {
		t.Errorf("%s = %q after New, want the previous 42", envNonceReject, got)
	}
	if got, ok := lookupEnv(envVANoSleep); got != before || ok != hadBefore {
		t.Errorf("%s = %q (set %v) after New, want %q (set %v)", envVANoSleep, got, ok, before, hadBefore)
	}
}
