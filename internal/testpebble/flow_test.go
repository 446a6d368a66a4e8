package testpebble

// Whole ACME flows through the project's own client (acme.Client), to check
// that Pebble's validation authority reaches the test's solvers through the
// mock DNS server, and how Pebble answers on the wire.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
)

// solverFunc presents a challenge; clean-up is a no-op.
type solverFunc func(acme.Challenge)

func (f solverFunc) Present(_ context.Context, ch acme.Challenge) error {
	if f != nil {
		f(ch)
	}
	return nil
}

func (solverFunc) CleanUp(context.Context, acme.Challenge) error { return nil }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newClient returns an acme.Client with a registered account.
func newClient(t *testing.T, c *CA) *acme.Client {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cl := &acme.Client{DirectoryURL: c.DirectoryURL(), Key: key, HTTPClient: c.HTTPClient()}
	if _, err := cl.Register(testCtx(t), acme.Account{TermsOfServiceAgreed: true}); err != nil {
		t.Fatalf("Register: %v", err)
	}
	return cl
}

// obtain runs the whole flow with one challenge type and returns the chain,
// verified against the CA's issuing roots.
func obtain(t *testing.T, c *CA, cl *acme.Client, ids []acme.Identifier, chalType string, solve solverFunc) []*x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := cl.Obtain(testCtx(t), acme.ObtainRequest{Identifiers: ids, CertKey: key, Solvers: map[string]acme.Solver{chalType: solve}})
	if err != nil {
		t.Fatalf("Obtain: %v", err)
	}
	chain := cert.Chain.Certificates
	if len(chain) < 2 {
		t.Fatalf("certificate chain has %d certificates", len(chain))
	}
	opts := x509VerifyOptions(c)
	for _, ic := range chain[1:] {
		opts.Intermediates.AddCert(ic)
	}
	if _, err := chain[0].Verify(opts); err != nil {
		t.Fatalf("chain does not verify: %v", err)
	}
	return chain
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

	cl := newClient(t, c)
	ids := append(acme.DNSNames("www.example.test"), acme.IPAddresses(netip.MustParseAddr("127.0.0.1"))...)
	chain := obtain(t, c, cl, ids, acme.ChallengeHTTP01, func(ch acme.Challenge) {
		keyAuths.Store(ch.Token, ch.KeyAuthorization)
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

	cl := newClient(t, c)
	ids := acme.DNSNames("*.example.test", "delegated.example.test")
	chain := obtain(t, c, cl, ids, acme.ChallengeDNS01, func(ch acme.Challenge) {
		name := ch.DNS01TXTRecordName()
		if ch.Identifier.Value == "delegated.example.test" {
			name = "delegated.validation.test"
		}
		c.DNS().AddTXT(name, "unrelated value")
		c.DNS().AddTXT(name, ch.DNS01TXTValue())
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
		NextProtos: []string{acme.ALPNProto},
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
	go ServeHandshakes(ln)

	cl := newClient(t, c)
	obtain(t, c, cl, acme.DNSNames("alpn.example.test"), acme.ChallengeTLSALPN01, func(ch acme.Challenge) {
		cert, err := acme.TLSALPN01Certificate(ch)
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		certs[ch.Identifier.Value] = cert
		mu.Unlock()
	})
}

func TestNonceReject100(t *testing.T) {
	t.Parallel()
	c := newCA(t, Options{NonceRejectPercent: 100})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cl := &acme.Client{DirectoryURL: c.DirectoryURL(), Key: key, HTTPClient: c.HTTPClient()}
	_, err := cl.Register(testCtx(t), acme.Account{TermsOfServiceAgreed: true})
	// The client recognises a problem document of type badNonce…
	if !errors.Is(err, acme.ErrBadNonce) {
		t.Fatalf("Register: %v, want badNonce", err)
	}
	// …and every badNonce answer carries a fresh Replay-Nonce, so the
	// client's ten tries needed one newNonce request in all.
	if got := c.Requests("newAccount"); got != 10 {
		t.Errorf("newAccount requests = %d, want 10", got)
	}
	if got := c.Requests("newNonce"); got != 1 {
		t.Errorf("newNonce requests = %d, want 1", got)
	}
}

func TestNonceRejectDefaultIsZero(t *testing.T) {
	t.Parallel()
	c := newCA(t, Options{})
	for range 20 {
		newClient(t, c)
	}
	// The client retries badNonce transparently: any rejection would show
	// as an extra newAccount request.
	if got := c.Requests("newAccount"); got != 20 {
		t.Errorf("newAccount requests = %d for 20 accounts, want 20", got)
	}
}

func TestAlwaysValidAndRetryAfter(t *testing.T) {
	t.Parallel()
	var ra atomic.Value // Retry-After of the finalize response
	c := newCA(t, Options{AlwaysValid: true, RetryAfterOrder: 7, Wrap: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r)
			if strings.HasPrefix(r.URL.Path, "/finalize-order/") {
				ra.Store(w.Header().Get("Retry-After"))
			}
		})
	}})
	cl := newClient(t, c)
	ctx := testCtx(t)

	o, err := cl.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("nothing.listens.test")})
	if err != nil {
		t.Fatal(err)
	}
	authz, err := cl.GetAuthorization(ctx, o.Authorizations[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.AcceptChallenge(ctx, authz.Challenges[0]); err != nil {
		t.Fatal(err)
	}
	if authz, err = cl.WaitAuthorization(ctx, authz.URL); err != nil || authz.Status != acme.StatusValid {
		t.Fatalf("authz with AlwaysValid: %v, %v; want valid", authz, err)
	}

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := acme.CSR(key, o.Identifiers)
	// FinalizeOrder would obey the 7 s Retry-After before polling: give it
	// less, then poll by hand.
	short, cancel := context.WithTimeout(ctx, time.Second)
	_, err = cl.FinalizeOrder(short, o, csr)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("FinalizeOrder: %v, want it to stop before the Retry-After", err)
	}
	got, _ := ra.Load().(string)
	if secs, err := strconv.Atoi(got); err == nil {
		if secs != 7 {
			t.Errorf("Retry-After = %d seconds, want 7", secs)
		}
	} else if when, err := http.ParseTime(got); err != nil {
		t.Errorf("Retry-After %q is neither seconds nor an HTTP date", got)
	} else if d := time.Until(when); d < 0 || d > 8*time.Second {
		t.Errorf("Retry-After %q is %v away, want about 7s", got, d)
	}
	for o.Status != acme.StatusValid {
		time.Sleep(20 * time.Millisecond)
		if o, err = cl.GetOrder(ctx, o.URL); err != nil {
			t.Fatal(err)
		}
		if o.Status == acme.StatusInvalid {
			t.Fatalf("order invalid: %v", o.Error)
		}
	}
}

func TestRevokeRenewalInfoEAB(t *testing.T) {
	t.Parallel()
	c := newCA(t, Options{AlwaysValid: true, EABKeys: map[string]string{"kid-1": "c2VjcmV0"}})
	cl := newClient(t, c)
	ctx := testCtx(t)
	leaf := obtain(t, c, cl, acme.DNSNames("ari.example.test"), acme.ChallengeHTTP01, nil)[0]
	base := strings.TrimSuffix(c.DirectoryURL(), "/dir")

	// Renewal info.
	start := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	end := start.Add(48 * time.Hour)
	if err := c.SetRenewalInfo(leaf, start, end, "https://example.test/why"); err != nil {
		t.Fatalf("SetRenewalInfo: %v", err)
	}
	ri, err := cl.RenewalInfo(ctx, leaf)
	if err != nil {
		t.Fatalf("RenewalInfo: %v", err)
	}
	if !ri.SuggestedWindow.Start.Equal(start) || !ri.SuggestedWindow.End.Equal(end) || ri.ExplanationURL != "https://example.test/why" {
		t.Errorf("renewal info = %+v, want window %v..%v and the explanation URL", ri, start, end)
	}
	if ri.RetryAfter != 6*time.Hour {
		t.Errorf("renewal info Retry-After = %v, want 6h (21600 s)", ri.RetryAfter)
	}
	if err := c.SetRenewalInfoJSON(leaf, "{not json"); err != nil {
		t.Fatalf("SetRenewalInfoJSON: %v", err)
	}
	if _, err := cl.RenewalInfo(ctx, leaf); err == nil || !strings.Contains(err.Error(), "malformed renewal info") {
		t.Errorf("RenewalInfo of the raw body %q: %v, want a malformed error", "{not json", err)
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
	foreignCert, err := acme.TLSALPN01Certificate(acme.Challenge{KeyAuthorization: "x", Identifier: acme.Identifier{Type: acme.IdentifierDNS, Value: "foreign.test"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Revoke(foreignCert.Leaf, 0); err == nil {
		t.Errorf("Revoke of a certificate the CA did not issue succeeded")
	}
	_, body := get(t, c, http.MethodGet, base+"/cert-status-by-serial/"+leaf.SerialNumber.Text(16))
	var status struct {
		Status string
		Reason *uint
	}
	if err := json.Unmarshal(body, &status); err != nil || status.Status != "Revoked" || status.Reason == nil || *status.Reason != 4 {
		t.Errorf("certificate status = %s, want Revoked with reason 4", body)
	}
	if err := cl.RevokeCertificate(ctx, leaf.Raw, nil, acme.ReasonSuperseded); !errors.Is(err, acme.ErrAlreadyRevoked) {
		t.Errorf("revokeCert after Revoke: %v, want alreadyRevoked", err)
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

// x509VerifyOptions verifies chains against the CA's issuing roots.
func x509VerifyOptions(c *CA) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: c.RootPool(), Intermediates: x509.NewCertPool()}
}

// parsePEMChain parses the certificates of a PEM file.
func parsePEMChain(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	chain, err := acme.ParseCertificateChain(data)
	if err != nil {
		t.Fatalf("parse certificate chain: %v", err)
	}
	return chain
}

// TestAuthzReuse: with AuthzReusePercent zero no new order reuses a valid
// authorization, although Pebble alone would reuse one in a hundred; with
// 100 every one does.
func TestAuthzReuse(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		percent    int
		wantStatus string
	}{{0, "pending"}, {100, "ready"}} {
		t.Run(strconv.Itoa(tt.percent), func(t *testing.T) {
			t.Parallel()
			c := newCA(t, Options{AlwaysValid: true, AuthzReusePercent: tt.percent})
			cl := newClient(t, c)
			ids := []acme.Identifier{{Type: "dns", Value: "reuse.example"}}
			obtain(t, c, cl, ids, acme.ChallengeHTTP01, nil)
			// Pebble's reuse fails the zero case with probability 1-0.99^n.
			const orders = 400
			for i := range orders {
				o, err := cl.NewOrder(testCtx(t), acme.OrderRequest{Identifiers: ids})
				if err != nil {
					t.Fatalf("order %d: %v", i, err)
				}
				if o.Status != tt.wantStatus {
					t.Fatalf("order %d of %d: status %q, want %q", i+1, orders, o.Status, tt.wantStatus)
				}
			}
		})
	}
}
