package relay_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/audit"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/relay"
	"github.com/tlsmint/tlsmint/solvers"
	"github.com/tlsmint/tlsmint/storage"
)

// An env is a relay in front of an in-process Pebble: the relay's ACME API
// on an httptest TLS server, its validator resolving every name to
// 127.0.0.1 through Pebble's mock DNS and connecting for http-01 to the
// downstream solver's port, and its upstream account at Pebble answering
// Pebble's http-01 on Pebble's port.
type env struct {
	ca       *testpebble.CA
	srv      *relay.Server
	ts       *httptest.Server
	store    storage.Storage
	log      *audit.Log
	down     *solvers.HTTP01 // downstream http-01, on downPort
	downPort int
	up       *solvers.HTTP01 // the relay's upstream http-01, on Pebble's port
	upstream *relay.Upstream
	resolver *net.Resolver
}

type envOptions struct {
	pebble  testpebble.Options
	store   storage.Storage // nil: in memory
	modify  func(*relay.Server)
	noServe bool // do not start the httptest server (a test mounts srv itself)
}

const adminToken = "test-admin-token"

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	ca := testsetup.CA(t, o.pebble)
	e := &env{ca: ca, store: o.store, up: &solvers.HTTP01{}, down: &solvers.HTTP01{}}
	if e.store == nil {
		e.store = storage.NewMemory()
	}
	testsetup.ServeHTTP(t, "127.0.0.1:"+strconv.Itoa(ca.HTTPPort()), e.up)
	if ln, err := net.Listen("tcp", net.JoinHostPort("::1", strconv.Itoa(ca.HTTPPort()))); err == nil {
		// IPv6 identifiers, where the machine has ::1.
		testsetup.Serve(t, ln, e.up)
	}
	e.downPort = testsetup.ServeHTTP(t, "127.0.0.1:0", e.down)
	e.resolver = testsetup.Resolver(ca.DNS())
	e.log = &audit.Log{Storage: e.store, Node: "relay-test", FlushInterval: time.Hour}
	t.Cleanup(func() { e.log.Close() })
	e.upstream = &relay.Upstream{
		Name:    "pebble",
		Client:  &acme.Client{DirectoryURL: ca.DirectoryURL(), Key: newKey(t), HTTPClient: ca.HTTPClient(), PollInterval: 10 * time.Millisecond},
		Account: acme.Account{TermsOfServiceAgreed: true},
		Solvers: map[string]acme.Solver{acme.ChallengeHTTP01: e.up},
	}
	e.srv = &relay.Server{
		Storage:    e.store,
		Upstreams:  []*relay.Upstream{e.upstream},
		Validator:  &relay.Validator{HTTPPort: e.downPort, Resolver: e.resolver, Timeout: 10 * time.Second},
		AuditLog:   e.log,
		AdminToken: adminToken,
	}
	if o.modify != nil {
		o.modify(e.srv)
	}
	t.Cleanup(func() { e.srv.Close() })
	if !o.noServe {
		e.ts = httptest.NewTLSServer(e.srv)
		t.Cleanup(e.ts.Close)
	}
	return e
}

// ctxT and newKey are testsetup's Context and Key, under the names the
// tests use.
func ctxT(t testing.TB) context.Context     { return testsetup.Context(t) }
func newKey(t testing.TB) *ecdsa.PrivateKey { return testsetup.Key(t) }

// dirURL is the relay's directory.
func (e *env) dirURL() string { return e.ts.URL + "/directory" }

// client returns a downstream acme.Client with a fresh key, unregistered.
func (e *env) client(t testing.TB) *acme.Client {
	t.Helper()
	return &acme.Client{DirectoryURL: e.dirURL(), Key: newKey(t), HTTPClient: e.ts.Client(), PollInterval: 10 * time.Millisecond}
}

// tenant stores a tenant with the policy and returns a fresh EAB key of it.
func (e *env) tenant(t testing.TB, id string, pol relay.Policy) *acme.ExternalAccountBinding {
	t.Helper()
	if err := e.srv.PutTenant(ctxT(t), relay.Tenant{ID: id, Policy: pol}); err != nil {
		t.Fatalf("PutTenant: %v", err)
	}
	eab, err := e.srv.NewEABKey(ctxT(t), id)
	if err != nil {
		t.Fatalf("NewEABKey: %v", err)
	}
	return eab
}

// examplePolicy allows example.com and below, 127.0.0.0/8 and ::1, and
// its validations to reach loopback, where the tests' solvers listen.
func examplePolicy() relay.Policy {
	return relay.Policy{Names: []string{"example.com"}, IPRanges: ipRanges("127.0.0.0/8", "::1/128"), Wildcards: true, ValidationTargets: loopback()}
}

// loopback are the loopback ranges, where every test's servers listen:
// tenants whose names are validated there must be allowed them.
func loopback() []netip.Prefix { return ipRanges("127.0.0.0/8", "::1/128") }

// registered returns a downstream client registered with a fresh EAB key
// of tenant "team" (created with examplePolicy when missing).
func (e *env) registered(t testing.TB) *acme.Client {
	t.Helper()
	if _, err := e.srv.Tenant(ctxT(t), "team"); err != nil {
		if err := e.srv.PutTenant(ctxT(t), relay.Tenant{ID: "team", Policy: examplePolicy()}); err != nil {
			t.Fatal(err)
		}
	}
	eab, err := e.srv.NewEABKey(ctxT(t), "team")
	if err != nil {
		t.Fatal(err)
	}
	c := e.client(t)
	if _, err := c.Register(ctxT(t), acme.Account{Contact: []string{"mailto:dev@example.com"}, ExternalAccountBinding: eab}); err != nil {
		t.Fatalf("Register: %v", err)
	}
	return c
}

// obtain obtains names through the relay with the downstream http-01
// solver.
func (e *env) obtain(t testing.TB, c *acme.Client, ids []acme.Identifier, mod func(*acme.ObtainRequest)) (*acme.Certificate, error) {
	t.Helper()
	req := acme.ObtainRequest{Identifiers: ids, CertKey: newKey(t), Solvers: map[string]acme.Solver{acme.ChallengeHTTP01: e.down}}
	if mod != nil {
		mod(&req)
	}
	return c.Obtain(ctxT(t), req)
}

// problemOf returns the *acme.Problem in err, failing the test without one.
func problemOf(t testing.TB, err error) *acme.Problem {
	t.Helper()
	var p *acme.Problem
	if !errors.As(err, &p) {
		t.Fatalf("got %v, want an ACME problem", err)
	}
	return p
}

// wantProblem fails unless err is a problem of kind with status.
func wantProblem(t testing.TB, err error, kind string, status int) {
	t.Helper()
	p := problemOf(t, err)
	if p.Type != "urn:ietf:params:acme:error:"+kind || (status != 0 && p.Status != status) {
		t.Fatalf("got problem %s (HTTP %d): %s; want %s (HTTP %d)", p.Type, p.Status, p.Detail, kind, status)
	}
}

// --- raw JWS requests, for what no well-behaved client sends ---

// nonce fetches a fresh nonce from the relay.
func (e *env) nonce(t testing.TB) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodHead, e.ts.URL+"/new-nonce", nil)
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	n := resp.Header.Get("Replay-Nonce")
	if n == "" {
		t.Fatal("no Replay-Nonce from new-nonce")
	}
	return n
}

// jwkJSON returns the public JWK of key.
func jwkJSON(t testing.TB, pub crypto.PublicKey) json.RawMessage {
	t.Helper()
	b, err := (&jose.JSONWebKey{Key: pub}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var b64 = base64.RawURLEncoding

// rawJWS signs payload under the protected header hdr with key, by hand,
// so that tests can build what go-jose would refuse to (alg mismatches).
// The signature follows hdr["alg"]'s hash; ES* signatures are r||s.
func rawJWS(t testing.TB, key crypto.Signer, hdr map[string]any, payload []byte) []byte {
	t.Helper()
	h, err := json.Marshal(hdr)
	if err != nil {
		t.Fatal(err)
	}
	input := b64.EncodeToString(h) + "." + b64.EncodeToString(payload)
	sig := signInput(t, key, hdr["alg"], []byte(input))
	out, _ := json.Marshal(map[string]string{"protected": b64.EncodeToString(h), "payload": b64.EncodeToString(payload), "signature": b64.EncodeToString(sig)})
	return out
}

func signInput(t testing.TB, key crypto.Signer, alg any, input []byte) []byte {
	t.Helper()
	var hf hash.Hash
	var ch crypto.Hash
	switch alg {
	case "ES384", "RS384":
		hf, ch = sha512.New384(), crypto.SHA384
	default:
		hf, ch = sha256.New(), crypto.SHA256
	}
	hf.Write(input)
	d := hf.Sum(nil)
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, k, d)
		if err != nil {
			t.Fatal(err)
		}
		n := (k.Curve.Params().BitSize + 7) / 8
		return append(pad(r, n), pad(s, n)...)
	case *rsa.PrivateKey:
		sig, err := rsa.SignPKCS1v15(rand.Reader, k, ch, d)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	t.Fatalf("cannot sign with %T", key)
	return nil
}

func pad(v *big.Int, n int) []byte {
	b := v.Bytes()
	return append(make([]byte, n-len(b)), b...)
}

// post sends body to url with content type ct and returns the status,
// the decoded problem (if any) and the headers.
func (e *env) post(t testing.TB, url, ct string, body []byte) (int, *acme.Problem, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		if got := resp.Header.Get("Content-Type"); got != "application/problem+json" {
			t.Fatalf("error response with Content-Type %q, want application/problem+json: %s", got, b)
		}
		p := new(acme.Problem)
		if err := json.Unmarshal(b, p); err != nil {
			t.Fatalf("error response is not a problem document: %s", b)
		}
		return resp.StatusCode, p, resp.Header
	}
	return resp.StatusCode, nil, resp.Header
}

// signedPost signs payload for url with the account (kid) or an embedded
// key (kid == "") and posts it.
func (e *env) signedPost(t testing.TB, key crypto.Signer, kid, url string, payload []byte) (int, *acme.Problem, http.Header) {
	t.Helper()
	hdr := map[string]any{"alg": algOf(key), "nonce": e.nonce(t), "url": url}
	if kid != "" {
		hdr["kid"] = kid
	} else {
		hdr["jwk"] = jwkJSON(t, key.Public())
	}
	return e.post(t, url, "application/jose+json", rawJWS(t, key, hdr, payload))
}

func algOf(key crypto.Signer) string {
	switch k := key.Public().(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P384() {
			return "ES384"
		}
		return "ES256"
	}
	return "RS256"
}

// accountURL returns the account URL of a registered client.
func accountURL(t testing.TB, c *acme.Client) string {
	t.Helper()
	a, err := c.GetAccount(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return a.URL
}

// records returns the relay's audit records of an operation.
func (e *env) records(t testing.TB, op string) []record.Audit {
	t.Helper()
	recs, err := e.log.Query(ctxT(t), record.AuditFilter{Operation: relay.OperationPrefix + op})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// hasWord reports whether s contains w, ignoring case.
func hasWord(s, w string) bool { return strings.Contains(strings.ToLower(s), strings.ToLower(w)) }

func ipRanges(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(s))
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

// swap is a handler whose target can be replaced, as a restart would.
type swap struct {
	mu sync.Mutex
	h  http.Handler
}

func (s *swap) set(h http.Handler) { s.mu.Lock(); s.h = h; s.mu.Unlock() }

func (s *swap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	h := s.h
	s.mu.Unlock()
	h.ServeHTTP(w, r)
}

// newSwapEnv is newEnv with its relay served behind a swap, so that a
// test can replace it with another on the same storage, as a restart
// would.
func newSwapEnv(t testing.TB, o envOptions) (*env, *swap) {
	t.Helper()
	o.noServe = true
	e := newEnv(t, o)
	h := &swap{}
	h.set(e.srv)
	e.ts = newTLSServer(t, h)
	return e, h
}

func newTLSServer(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewTLSServer(h)
	t.Cleanup(ts.Close)
	return ts
}

// verifyOpts are the options to verify ch's leaf for name against ca.
func verifyOpts(ca *testpebble.CA, ch *acme.Chain, name string) x509.VerifyOptions {
	inter := x509.NewCertPool()
	if ch != nil {
		for _, c := range ch.Certificates[1:] {
			inter.AddCert(c)
		}
	}
	return x509.VerifyOptions{DNSName: name, Roots: ca.RootPool(), Intermediates: inter}
}

// authorizedOrder places an order for name through c, validates its
// authorizations, and returns it ready with a CSR for it.
func (e *env) authorizedOrder(t *testing.T, c *acme.Client, name string) (*acme.Order, []byte) {
	t.Helper()
	ids := acme.DNSNames(name)
	o, err := c.NewOrder(ctxT(t), acme.OrderRequest{Identifiers: ids})
	if err != nil {
		t.Fatal(err)
	}
	authorize(t, e, c, o)
	csr, err := acme.CSR(newKey(t), ids)
	if err != nil {
		t.Fatal(err)
	}
	return o, csr
}

// finalizeRaw posts csr to o's finalize URL as c's account and returns
// the answer as it came: status code, problem and header.
func (e *env) finalizeRaw(t testing.TB, c *acme.Client, o *acme.Order, csr []byte) (int, *acme.Problem, http.Header) {
	t.Helper()
	return e.signedPost(t, c.Key, accountURL(t, c), o.Finalize, []byte(`{"csr":"`+b64.EncodeToString(csr)+`"}`))
}
