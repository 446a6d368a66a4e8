package relay_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/relay"
)

// verifyLeaf checks that a chain verifies to the upstream's roots for name.
func (e *env) verifyLeaf(t *testing.T, ch *acme.Chain, name string) {
	t.Helper()
	inter := x509.NewCertPool()
	for _, c := range ch.Certificates[1:] {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{Roots: e.ca.RootPool(), Intermediates: inter}
	if a, err := netip.ParseAddr(name); err == nil {
		opts.DNSName = a.String()
	} else {
		opts.DNSName = name
	}
	if _, err := ch.Leaf().Verify(opts); err != nil {
		t.Fatalf("chain does not verify for %s: %v", name, err)
	}
}

// TestObtainThroughRelay is the main flow with tlsmint's own client as
// downstream client: http-01 validated by the relay, the certificate
// obtained from Pebble with the client's CSR.
func TestObtainThroughRelay(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{pebble: newPebbleOptions()})
	c := e.registered(t)
	key := newKey(t)
	ids := append(acme.DNSNames("www.example.com", "example.com"), acme.IPAddresses(netip.MustParseAddr("127.0.0.1"))...)
	cert, err := e.obtain(t, c, ids, func(r *acme.ObtainRequest) { r.CertKey = key })
	if err != nil {
		t.Fatalf("Obtain through the relay: %v", err)
	}
	e.verifyLeaf(t, cert.Chain, "www.example.com")
	e.verifyLeaf(t, cert.Chain, "127.0.0.1")
	if !cert.Leaf().PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
		t.Fatal("the leaf does not carry the client's key")
	}
	if len(cert.Chains) != 2 {
		t.Fatalf("%d chains, want the default and Pebble's alternate", len(cert.Chains))
	}
	if got := e.ca.Requests("newOrder"); got != 1 {
		t.Fatalf("Pebble saw %d orders, want 1", got)
	}
	if err := e.log.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	issued := e.records(t, "issue")
	if len(issued) != 1 || issued[0].Outcome != record.OutcomeOK || issued[0].Issuer != "pebble" || issued[0].Tenant != "team" {
		t.Fatalf("issue records = %+v", issued)
	}
	if v := e.records(t, "validate.http-01"); len(v) != 3 {
		t.Fatalf("%d validation records, want 3", len(v))
	}
}

func newPebbleOptions() testpebble.Options {
	return testpebble.Options{AlternateRoots: 1}
}

// TestOrderRefusals checks newOrder's refusals: each gets its problem type
// and nothing reaches the upstream.
func TestOrderRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{modify: func(s *relay.Server) { s.Profiles = map[string]string{"tlsserver": "", "shortlived": ""} }})
	pol := examplePolicy()
	pol.Wildcards = false
	pol.MaxNames = 3
	pol.Profiles = []string{"tlsserver"}
	eab := e.tenant(t, "narrow", pol)
	c := e.client(t)
	if _, err := c.Register(ctxT(t), acme.Account{ExternalAccountBinding: eab}); err != nil {
		t.Fatal(err)
	}
	dns := func(v ...string) []acme.Identifier {
		var out []acme.Identifier
		for _, n := range v {
			out = append(out, acme.Identifier{Type: "dns", Value: n})
		}
		return out
	}
	long := ""
	for range 5 {
		long += "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
	}
	for _, tc := range []struct {
		name    string
		req     acme.OrderRequest
		kind    string
		status  int
		subprob int
	}{
		{"outside the policy", acme.OrderRequest{Identifiers: dns("www.example.org")}, "rejectedIdentifier", 400, 0},
		{"suffix trick", acme.OrderRequest{Identifiers: dns("evilexample.com")}, "rejectedIdentifier", 400, 0},
		{"address outside the ranges", acme.OrderRequest{Identifiers: acme.IPAddresses(netip.MustParseAddr("10.0.0.1"))}, "rejectedIdentifier", 400, 0},
		{"wildcard not allowed", acme.OrderRequest{Identifiers: dns("*.example.com")}, "rejectedIdentifier", 400, 0},
		{"two refused", acme.OrderRequest{Identifiers: dns("a.example.org", "b.example.net", "ok.example.com")}, "rejectedIdentifier", 400, 2},
		{"too many names", acme.OrderRequest{Identifiers: dns("a.example.com", "b.example.com", "c.example.com", "d.example.com")}, "malformed", 400, 0},
		{"profile not allowed", acme.OrderRequest{Identifiers: dns("a.example.com"), Profile: "shortlived"}, "invalidProfile", 400, 0},
		{"validity period", acme.OrderRequest{Identifiers: dns("a.example.com"), NotAfter: time.Now().Add(time.Hour)}, "malformed", 400, 0},
		{"unknown replaces", acme.OrderRequest{Identifiers: dns("a.example.com"), Replaces: "aGVsbG8.d29ybGQ"}, "malformed", 400, 0},
		{"single label", acme.OrderRequest{Identifiers: dns("localhost")}, "rejectedIdentifier", 400, 0},
		{"underscore", acme.OrderRequest{Identifiers: dns("a_b.example.com")}, "rejectedIdentifier", 400, 0},
		{"unicode", acme.OrderRequest{Identifiers: dns("bücher.example.com")}, "rejectedIdentifier", 400, 0},
		{"bad punycode", acme.OrderRequest{Identifiers: dns("xn--zz.example.com")}, "rejectedIdentifier", 400, 0},
		{"reserved label", acme.OrderRequest{Identifiers: dns("ab--c.example.com")}, "rejectedIdentifier", 400, 0},
		{"leading hyphen", acme.OrderRequest{Identifiers: dns("-a.example.com")}, "rejectedIdentifier", 400, 0},
		{"numeric TLD", acme.OrderRequest{Identifiers: dns("127.0.0.1")}, "rejectedIdentifier", 400, 0},
		{"too long", acme.OrderRequest{Identifiers: dns(long + "example.com")}, "rejectedIdentifier", 400, 0},
		{"wildcard in the middle", acme.OrderRequest{Identifiers: dns("a.*.example.com")}, "rejectedIdentifier", 400, 0},
		{"empty label", acme.OrderRequest{Identifiers: dns("a..example.com")}, "rejectedIdentifier", 400, 0},
		{"NUL", acme.OrderRequest{Identifiers: dns("a\x00.example.com")}, "rejectedIdentifier", 400, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.NewOrder(ctxT(t), tc.req)
			if err == nil {
				t.Fatal("NewOrder succeeded")
			}
			wantProblem(t, err, tc.kind, tc.status)
			p := problemOf(t, err)
			if len(p.Subproblems) != tc.subprob {
				t.Fatalf("%d subproblems, want %d: %v", len(p.Subproblems), tc.subprob, p)
			}
		})
	}
	// A profile the directory does not list (acme.Client refuses it
	// before sending, so it is sent raw).
	code, p, _ := e.signedPost(t, c.Key, accountURL(t, c), e.ts.URL+"/new-order", []byte(`{"identifiers":[{"type":"dns","value":"a.example.com"}],"profile":"nope"}`))
	if code != 400 || p.Type != acme.ErrInvalidProfile.Type {
		t.Fatalf("unknown profile: %d %v, want 400 invalidProfile", code, p)
	}
	code, p, _ = e.signedPost(t, c.Key, accountURL(t, c), e.ts.URL+"/new-order", []byte(`{"identifiers":[{"type":"email","value":"a@example.com"}]}`))
	if code != 400 || p.Type != acme.ErrUnsupportedIdentifier.Type {
		t.Fatalf("email identifier: %d %v, want 400 unsupportedIdentifier", code, p)
	}
	if n := e.ca.Requests("newOrder"); n != 0 {
		t.Fatalf("Pebble saw %d orders, want none", n)
	}
}

// TestFinalizeRefusals checks the CSR checks: names must be the order's,
// the key must not be an account key and must be of an allowed type.
func TestFinalizeRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.registered(t)
	ctx := ctxT(t)
	ids := acme.DNSNames("a.example.com")
	o, err := c.NewOrder(ctx, acme.OrderRequest{Identifiers: ids})
	if err != nil {
		t.Fatal(err)
	}
	// Not ready yet.
	good, _ := acme.CSR(newKey(t), ids)
	if _, err := c.FinalizeOrder(ctx, o, good); !errors.Is(err, acme.ErrOrderNotReady) {
		t.Fatalf("finalize before validation: %v, want orderNotReady", err)
	}
	authorize(t, e, c, o)
	csr := func(ids []acme.Identifier, key crypto.Signer) []byte {
		der, err := acme.CSR(key, ids)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	other := e.registered(t)
	for _, tc := range []struct {
		name string
		csr  []byte
	}{
		{"extra name", csr(acme.DNSNames("a.example.com", "b.example.com"), newKey(t))},
		{"other name", csr(acme.DNSNames("b.example.com"), newKey(t))},
		{"account key", csr(ids, c.Key)},
		{"another account's key", csr(ids, other.Key)},
		{"garbage", []byte("not a CSR")},
		{"Ed25519 key", csr(ids, func() crypto.Signer { _, k, _ := ed25519.GenerateKey(rand.Reader); return k }())},
		{"RSA 1024 key", csr(ids, func() crypto.Signer { k, _ := rsa.GenerateKey(rand.Reader, 1024); return k }())},
		{"P-521 key", csr(ids, func() crypto.Signer { k, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader); return k }())},
		{"800 names", func() []byte {
			many := slices.Clone(ids)
			for i := range 800 {
				many = append(many, acme.Identifier{Type: "dns", Value: fmt.Sprintf("n%d.example.com", i)})
			}
			return csr(many, newKey(t))
		}()},
		{"e-mail name", func() []byte {
			der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"a.example.com"}, EmailAddresses: []string{"a@example.com"}}, newKey(t))
			if err != nil {
				t.Fatal(err)
			}
			return der
		}()},
		{"common name not a SAN", func() []byte {
			der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "b.example.com"}, DNSNames: []string{"a.example.com"}}, newKey(t))
			if err != nil {
				t.Fatal(err)
			}
			return der
		}()},
		{"tampered", func() []byte { b := csr(ids, newKey(t)); b[len(b)-3] ^= 1; return b }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.FinalizeOrder(ctx, o, tc.csr)
			wantProblem(t, err, "badCSR", 400)
		})
	}
	if n := e.ca.Requests("newOrder"); n != 0 {
		t.Fatalf("Pebble saw %d orders, want none", n)
	}
	// The order is still ready: a good CSR finalizes it.
	final, err := c.FinalizeOrder(ctx, o, good)
	if err != nil || final.Status != acme.StatusValid {
		t.Fatalf("finalize with a good CSR: %v, %v", final, err)
	}
	if _, err := c.FinalizeOrder(ctx, o, good); !errors.Is(err, acme.ErrOrderNotReady) {
		t.Fatalf("finalizing twice: %v, want orderNotReady", err)
	}
}

// authorize validates every authorization of o with http-01.
func authorize(t *testing.T, e *env, c *acme.Client, o *acme.Order) {
	t.Helper()
	ctx := ctxT(t)
	for _, u := range o.Authorizations {
		a, err := c.GetAuthorization(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range a.Challenges {
			if ch.Type != acme.ChallengeHTTP01 {
				continue
			}
			if err := e.down.Present(ctx, ch); err != nil {
				t.Fatal(err)
			}
			got, err := c.AcceptChallenge(ctx, ch)
			if err != nil || got.Status != acme.StatusValid {
				t.Fatalf("AcceptChallenge: %+v, %v; want valid", got, err)
			}
			e.down.CleanUp(ctx, ch)
		}
	}
}

// TestFinalizeAfterPolicyNarrowed: an order placed and validated while the
// policy allowed its names is not finalized once the administrator took
// them away (or withdrew the pre-authorization that made it ready): the
// narrowed policy applies at once, and nothing reaches the upstream.
func TestFinalizeAfterPolicyNarrowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := ctxT(t)
	pol := examplePolicy()
	pol.Names = append(pol.Names, "example.net")
	pol.PreAuthorized = []string{"pre.example.net"}
	eab := e.tenant(t, "shrinking", pol)
	c := e.client(t)
	if _, err := c.Register(ctx, acme.Account{ExternalAccountBinding: eab}); err != nil {
		t.Fatal(err)
	}
	validated, err := c.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("gone.example.com")})
	if err != nil {
		t.Fatal(err)
	}
	authorize(t, e, c, validated)
	pre, err := c.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("pre.example.net")})
	if err != nil || pre.Status != acme.StatusReady {
		t.Fatalf("pre-authorized order: %+v, %v; want ready", pre, err)
	}
	narrowed := pol
	narrowed.Names = []string{"example.net"}
	narrowed.PreAuthorized = nil
	if err := e.srv.PutTenant(ctx, relay.Tenant{ID: "shrinking", Policy: narrowed}); err != nil {
		t.Fatal(err)
	}
	csr, _ := acme.CSR(newKey(t), validated.Identifiers)
	_, err = c.FinalizeOrder(ctx, validated, csr)
	wantProblem(t, err, "rejectedIdentifier", 400)
	csr, _ = acme.CSR(newKey(t), pre.Identifiers)
	_, err = c.FinalizeOrder(ctx, pre, csr)
	wantProblem(t, err, "unauthorized", 403)
	if n := e.ca.Requests("newOrder"); n != 0 {
		t.Fatalf("Pebble saw %d orders, want none", n)
	}
}
